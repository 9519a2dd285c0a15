-- zoo: one table per trap that preflight and the catalog must recognise.
--
-- Run by psql inside one transaction (tests/zoo/mod.rs):
--   psql -1 -v ON_ERROR_STOP=1 -f zoo.sql
--
--   public.keyed              plain, primary key, serial id                  eligible
--   public.unique_ok          no primary key, unique index on NOT NULL cols  eligible (Unique)
--   public.no_key             no key at all                                  fail
--   public.partial_unique     only a partial unique index                    fail
--   public.nullable_unique    only a unique index on a nullable column       fail
--   public.expr_unique        only a unique index on an expression           fail
--   public.measurements       partitioned parent, leaves measurements_2024/5 fail (choose leaves)
--   public.generated_col      a stored generated column                      fail
--   public.blobs              an oid column and an lo column                 warn
--   public."we""ird"          a double quote in its name                     fail (Bucardo's CLI)
--   public.unlogged_t         UNLOGGED                                       warn
--   public.triggered          a user trigger                                 warn
--   public.customers/orders   orders references customers (FK)               warn when only one is chosen
--   "Mixed Case"."Order Items" mixed case and spaces                         eligible
--   public.seqs               identity, serial and DEFAULT nextval of a standalone sequence

CREATE EXTENSION IF NOT EXISTS lo;

CREATE TABLE public.keyed (
    id    serial PRIMARY KEY,
    label text NOT NULL
);

CREATE TABLE public.unique_ok (
    code  text NOT NULL,
    part  integer NOT NULL,
    note  text
);
CREATE UNIQUE INDEX unique_ok_code_part ON public.unique_ok (code, part);

CREATE TABLE public.no_key (
    at    timestamptz NOT NULL DEFAULT now(),
    msg   text
);

CREATE TABLE public.partial_unique (
    id      integer NOT NULL,
    active  boolean NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX partial_unique_active ON public.partial_unique (id) WHERE active;

CREATE TABLE public.nullable_unique (
    email text UNIQUE,
    name  text NOT NULL
);

CREATE TABLE public.expr_unique (
    email text NOT NULL
);
CREATE UNIQUE INDEX expr_unique_lower ON public.expr_unique (lower(email));

CREATE TABLE public.measurements (
    id    bigint NOT NULL,
    at    date   NOT NULL,
    value double precision,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE public.measurements_2024 PARTITION OF public.measurements
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.measurements_2025 PARTITION OF public.measurements
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');

CREATE TABLE public.generated_col (
    id     integer PRIMARY KEY,
    price  numeric(10,2) NOT NULL,
    qty    integer NOT NULL,
    total  numeric GENERATED ALWAYS AS (price * qty) STORED
);

CREATE TABLE public.blobs (
    id       integer PRIMARY KEY,
    raw_oid  oid,
    doc      lo
);

CREATE TABLE public."we""ird" (
    id integer PRIMARY KEY
);

CREATE UNLOGGED TABLE public.unlogged_t (
    id integer PRIMARY KEY
);

CREATE TABLE public.triggered (
    id       integer PRIMARY KEY,
    touched  timestamptz
);
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.touched := now();
    RETURN NEW;
END $$;
CREATE TRIGGER triggered_touch BEFORE INSERT OR UPDATE ON public.triggered
    FOR EACH ROW EXECUTE FUNCTION public.touch();

CREATE TABLE public.customers (
    id    integer PRIMARY KEY,
    name  text NOT NULL
);
CREATE TABLE public.orders (
    id           integer PRIMARY KEY,
    customer_id  integer NOT NULL REFERENCES public.customers (id),
    amount       numeric(12,2) NOT NULL
);

CREATE SCHEMA "Mixed Case";
CREATE TABLE "Mixed Case"."Order Items" (
    "Order Id"  integer NOT NULL,
    "Line No"   integer NOT NULL,
    "Item Name" text NOT NULL,
    PRIMARY KEY ("Order Id", "Line No")
);

CREATE SEQUENCE public.shared_seq;
CREATE TABLE public.seqs (
    id     integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    s      serial,
    d      bigint NOT NULL DEFAULT nextval('public.shared_seq')
);

INSERT INTO public.keyed (label) SELECT 'k' || g FROM generate_series(1, 50) g;
INSERT INTO public.unique_ok VALUES ('a', 1, NULL), ('a', 2, 'x');
INSERT INTO public.no_key (msg) VALUES ('one'), ('two'), ('two');
INSERT INTO public.partial_unique VALUES (1, true), (1, false);
INSERT INTO public.nullable_unique VALUES (NULL, 'a'), (NULL, 'b');
INSERT INTO public.expr_unique VALUES ('A@example.com');
INSERT INTO public.measurements VALUES (1, '2024-05-01', 1.5), (2, '2025-05-01', 2.5);
INSERT INTO public.generated_col VALUES (1, 2.50, 4);
INSERT INTO public.blobs VALUES (1, NULL, NULL);
INSERT INTO public."we""ird" VALUES (1);
INSERT INTO public.unlogged_t VALUES (1);
INSERT INTO public.triggered (id) VALUES (1);
INSERT INTO public.customers VALUES (1, 'Ada'), (2, 'Grace');
INSERT INTO public.orders VALUES (10, 1, 9.99), (11, 2, 19.99);
INSERT INTO "Mixed Case"."Order Items" VALUES (1, 1, 'widget'), (1, 2, 'gadget');
INSERT INTO public.seqs DEFAULT VALUES;
INSERT INTO public.seqs DEFAULT VALUES;
