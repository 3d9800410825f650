DROP TABLE command_users;
