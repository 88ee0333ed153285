-- Keystone's password table before the Pike expand (simplified): the row key and the old column.
CREATE TABLE password (
    id INTEGER PRIMARY KEY,
    password TEXT
);
