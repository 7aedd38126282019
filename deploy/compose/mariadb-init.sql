-- docker compose: the application's database, as a typical backend creates it, and reaper's login.
-- Runs once, when the mariadb service starts on an empty volume (docker-entrypoint-initdb.d).
-- To start over: docker compose down --volumes.

SET time_zone = '+00:00';

CREATE DATABASE IF NOT EXISTS app CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE app;

-- The job table, the shape SQLAlchemy gives it: DATETIME(6) columns (naive, UTC), and an ENUM
-- status holding the upper-case member names of a Python Enum.
CREATE TABLE IF NOT EXISTS processing_tasks (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    task_type     VARCHAR(100) NULL,
    status        ENUM('PENDING', 'RUNNING', 'SUCCESS', 'FAILURE', 'RETRY', 'REVOKED') NOT NULL DEFAULT 'PENDING',
    payload       JSON NULL,
    error_message VARCHAR(1000) NULL,
    created_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    started_at    DATETIME(6) NULL,
    completed_at  DATETIME(6) NULL,
    updated_at    DATETIME(6) NULL,
    PRIMARY KEY (id),
    -- The indexes `reaper --check-indexes` recommends (README, "Indexes").
    INDEX ix_processing_tasks_status_started_at_id (status, started_at, id),
    INDEX ix_processing_tasks_status_created_at_id (status, created_at, id),
    INDEX ix_processing_tasks_status_completed_at_id (status, completed_at, id),
    INDEX ix_processing_tasks_created_at (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- reaper's login: reads the table, sets zombies to failure, deletes expired rows, and nothing more
-- (GET_LOCK, its one-reaper lock, needs no privilege). A demo password: docker-compose.yml's
-- REAPER_DATABASE_URL carries the same one; change both together.
CREATE USER IF NOT EXISTS 'reaper'@'%' IDENTIFIED BY 'reaper-demo-password';
GRANT SELECT, UPDATE, DELETE ON app.processing_tasks TO 'reaper'@'%';

-- Demo rows, so that the dashboard has something to show: 40 days of finished tasks, a few failed,
-- and some zombies (running for days, pending for hours) among the live ones. Remove this
-- statement for an empty table. seq_1_to_N is MariaDB's SEQUENCE engine.
INSERT INTO processing_tasks (task_type, status, payload, error_message, created_at, started_at, completed_at, updated_at)
SELECT
    t.task_type,
    t.status,
    JSON_OBJECT('n', t.n),
    IF(t.status = 'FAILURE', 'worker raised: TimeoutError', NULL),
    t.created_at,
    IF(t.status = 'PENDING', NULL, t.created_at + INTERVAL 2 SECOND),
    IF(t.status IN ('SUCCESS', 'FAILURE'), t.created_at + INTERVAL (2 + t.n MOD 300) SECOND, NULL),
    CASE
        WHEN t.status IN ('SUCCESS', 'FAILURE') THEN t.created_at + INTERVAL (2 + t.n MOD 300) SECOND
        WHEN t.status = 'RUNNING' THEN t.created_at + INTERVAL 2 SECOND
        ELSE t.created_at
    END
FROM (
    SELECT
        s.seq AS n,
        ELT(1 + s.seq MOD 4, 'send_email', 'render_report', 'import_csv', 'sync_crm') AS task_type,
        CASE
            WHEN s.seq MOD 97 = 0 THEN 'RUNNING'
            WHEN s.seq MOD 89 = 0 THEN 'PENDING'
            WHEN s.seq MOD 11 = 0 THEN 'FAILURE'
            ELSE 'SUCCESS'
        END AS status,
        UTC_TIMESTAMP(6) - INTERVAL ((s.seq * 7919) MOD (40 * 24 * 60)) MINUTE AS created_at
    FROM seq_1_to_6000 AS s
) AS t;
