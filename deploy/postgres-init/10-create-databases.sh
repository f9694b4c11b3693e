#!/bin/sh
# Runs once, when the postgres container initialises an empty volume: one database for the
# warehouse (raw, staging, marts, ml schemas) and one for Dagster's runs, events and schedules.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE DATABASE "${WAREHOUSE_DB:-music_platform}";
CREATE DATABASE "${DAGSTER_DB:-dagster}";
SQL
