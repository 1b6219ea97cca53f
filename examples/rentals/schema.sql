-- A small rental shop in the shape of the pagila sample database (itself
-- the PostgreSQL port of MySQL's sakila): stores and films are reference
-- data, customers are the subjects, and their addresses, rentals and
-- payments reach them through foreign keys.
CREATE TABLE store (
	store_id INTEGER PRIMARY KEY,
	name     TEXT NOT NULL
);
CREATE TABLE film (
	film_id     INTEGER PRIMARY KEY,
	title       TEXT NOT NULL,
	rental_rate REAL NOT NULL
);
CREATE TABLE address (
	address_id  INTEGER PRIMARY KEY,
	address     TEXT NOT NULL,
	district    TEXT,
	postal_code TEXT,
	phone       TEXT
);
CREATE TABLE customer (
	customer_id INTEGER PRIMARY KEY,
	user_id     TEXT NOT NULL UNIQUE,
	country     TEXT NOT NULL,
	store_id    INTEGER NOT NULL REFERENCES store (store_id),
	first_name  TEXT,
	last_name   TEXT,
	email       TEXT,
	address_id  INTEGER REFERENCES address (address_id)
);
CREATE TABLE rental (
	rental_id   INTEGER PRIMARY KEY,
	rental_date TEXT NOT NULL,
	film_id     INTEGER NOT NULL REFERENCES film (film_id),
	customer_id INTEGER NOT NULL REFERENCES customer (customer_id),
	return_date TEXT
);
CREATE INDEX rental_customer ON rental (customer_id);
CREATE TABLE payment (
	payment_id   INTEGER PRIMARY KEY,
	rental_id    INTEGER NOT NULL REFERENCES rental (rental_id),
	amount       REAL NOT NULL,
	payment_date TEXT NOT NULL
);
