-- The copy benchmark's dataset (assets/bench/README.md): about 750 MB on disk.
--
--   public.ledger        3.5M rows, bigint key, numeric, timestamptz, short text; one secondary index
--   public.documents     300k rows of jsonb
--   public.attachments   120k rows of bytea (incompressible, stored inline)
--   public.comments      500k rows of multi-line text with tabs and backslashes
--   small.t001..t220     220 tables of 500 rows
--
-- Deterministic: run it with `psql -v ON_ERROR_STOP=1 -f dataset.sql`, then ANALYZE.
-- `-v factor=F` multiplies the rows of the four large tables (the scaling benchmark's sizes).

\if :{?factor}
\else
\set factor 1
\endif

SELECT setseed(0.42);

CREATE TABLE public.ledger (
    id          bigint PRIMARY KEY,
    account_id  integer NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    currency    char(3) NOT NULL,
    created_at  timestamptz NOT NULL,
    status      smallint NOT NULL,
    memo        text
);
INSERT INTO public.ledger
SELECT g,
       (random() * 100000)::int,
       round((random() * 20000 - 10000)::numeric, 2),
       (ARRAY['EUR', 'USD', 'GBP', 'CHF'])[1 + g % 4],
       timestamptz '2020-01-01' + g * interval '7 seconds',
       (g % 7)::smallint,
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'payment ' || md5(g::text) END
  FROM generate_series(1, (3500000 * :factor)::int) g;
CREATE INDEX ledger_account ON public.ledger (account_id);

CREATE TABLE public.documents (
    id    integer PRIMARY KEY,
    body  jsonb NOT NULL
);
INSERT INTO public.documents
SELECT g,
       jsonb_build_object(
           'customer', jsonb_build_object('id', g % 9973, 'name', 'Customer ' || md5(g::text)),
           'lines', jsonb_build_array(
               jsonb_build_object('sku', left(md5((g * 3)::text), 10), 'qty', g % 13, 'price', (g % 997) / 10.0),
               jsonb_build_object('sku', left(md5((g * 7)::text), 10), 'qty', g % 5, 'price', (g % 331) / 10.0)),
           'tags', jsonb_build_array('a' || g % 17, 'b' || g % 23),
           'paid', g % 3 = 0,
           'note', repeat(chr(97 + g % 26), 40 + g % 60))
  FROM generate_series(1, (300000 * :factor)::int) g;

CREATE TABLE public.attachments (
    id       integer PRIMARY KEY,
    name     text NOT NULL,
    content  bytea NOT NULL
);
INSERT INTO public.attachments
SELECT g, 'file-' || g || '.bin',
       decode((SELECT string_agg(md5((g * 31 + k)::text), '') FROM generate_series(1, 24) k), 'hex')
  FROM generate_series(1, (120000 * :factor)::int) g;

CREATE TABLE public.comments (
    id         integer PRIMARY KEY,
    ledger_id  bigint NOT NULL,
    author     text NOT NULL,
    body       text NOT NULL,
    posted_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.comments
SELECT g, 1 + (g * 7) % 3500000, 'user' || g % 5000,
       'Line one of ' || md5(g::text) || E'\n\tindented\\path\\to ' || md5((-g)::text) || E'\r\nend ✓',
       timestamptz '2024-01-01' + g * interval '1 minute'
  FROM generate_series(1, (500000 * :factor)::int) g;
CREATE INDEX comments_ledger ON public.comments (ledger_id);

CREATE SCHEMA small;
DO $$
BEGIN
    FOR i IN 1..220 LOOP
        EXECUTE format(
            'CREATE TABLE small.%I (id integer PRIMARY KEY, code text NOT NULL, qty integer, price numeric(10,2), updated timestamptz)',
            't' || lpad(i::text, 3, '0'));
        EXECUTE format(
            'INSERT INTO small.%I SELECT g, md5((g * %s)::text), g %% 100, g * 1.25, timestamptz ''2024-06-01'' + g * interval ''1 hour'' FROM generate_series(1, 500) g',
            't' || lpad(i::text, 3, '0'), i);
    END LOOP;
END
$$;
