-- One server, separate databases: Airflow's metadata and greenflow's ledger never share a schema.
CREATE USER airflow WITH PASSWORD 'airflow';
CREATE DATABASE airflow OWNER airflow;
CREATE USER greenflow WITH PASSWORD 'greenflow';
CREATE DATABASE greenflow OWNER greenflow;
CREATE USER prefect WITH PASSWORD 'prefect';
CREATE DATABASE prefect OWNER prefect;
