-- zoo_types: one column per kind of value the data copy must carry unchanged (tests/copy.rs).
--
--   zoo.scalars   built-in types only: travels as binary COPY
--   zoo.custom    enums, domains, arrays of enums, a composite: travels as text COPY
--   zoo.empty     no rows at all
--   indexes       at the end: plain, partial, expression, GIN, unique, and one with a comment
--
-- Every table has a row with NULL in every nullable column. Text values hold every control
-- character but NUL, backslashes, quotes and non-ASCII characters.

CREATE SCHEMA zoo;

CREATE TYPE zoo.mood AS ENUM ('sad', 'ok', 'happy', 'it''s "complicated"');
CREATE DOMAIN zoo.positive AS integer CHECK (VALUE > 0);
CREATE DOMAIN zoo.label AS text CHECK (VALUE <> '');
CREATE TYPE zoo.pair AS (a integer, b text);

CREATE TABLE zoo.scalars (
    id        bigint PRIMARY KEY,
    n         numeric,
    n2        numeric(12, 4),
    f8        double precision,
    f4        real,
    i2        smallint,
    b         boolean,
    t         text,
    vc        varchar(40),
    c         char(5),
    by        bytea,
    j         jsonb,
    js        json,
    ia        integer[],
    ta        text[],
    na        numeric[],
    ts        timestamptz,
    tsn       timestamp,
    d         date,
    tm        time,
    iv        interval,
    u         uuid,
    ip        inet,
    r         int4range,
    tr        tstzrange,
    tv        tsvector,
    bits      bit varying(16)
);

INSERT INTO zoo.scalars
SELECT g,
       (g * 12345.6789)::numeric * (CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END),
       (g % 1000) / 7.0,
       g / 3.0,
       (g / 7.0)::real,
       (g % 30000)::smallint,
       g % 3 = 0,
       'row ' || g || E'\ttab\nnewline\\backslash\r\rreturn ' || chr(1) || chr(31) || chr(127)
           || E' \u00e9\u00df\u4e2d\u6587 \U0001F600 "quoted" ''single'' ' || repeat('x', g % 50),
       'vc' || g,
       (g % 100)::text,
       decode(md5(g::text) || '00ff5c0a0d09', 'hex'),
       jsonb_build_object('g', g, 'txt', E'line\nnext\t"q"\\', 'arr', jsonb_build_array(1, 'two', NULL, true), 'uni', E'\u00e9\U0001F600'),
       ('{"g": ' || g || ', "dup": 1, "dup": 2}')::json,
       ARRAY[g, -g, NULL, 0],
       ARRAY['a,b', E'c"d', E'e\\f', '{g}', NULL, '', 'NULL', E'new\nline'],
       ARRAY[1.5, -2.25, 'NaN']::numeric[],
       timestamptz '2024-03-31 01:30:00+00' + g * interval '1 hour 7 minutes',
       timestamp '1999-12-31 23:59:59.999999' + g * interval '1 day',
       date '2000-02-29' + g,
       time '00:00:01' + g * interval '1 second',
       g * interval '1 day 2 hours 3 minutes 4.5 seconds',
       md5(g::text)::uuid,
       ('10.' || g % 256 || '.0.1/24')::inet,
       int4range(g, g + 10),
       tstzrange(timestamptz '2024-01-01', timestamptz '2024-01-01' + g * interval '1 minute', '[)'),
       to_tsvector('simple', 'the quick brown fox ' || g),
       (g % 65536)::bit(16)::varbit
  FROM generate_series(1, 2000) g;

INSERT INTO zoo.scalars (id) VALUES (0);
INSERT INTO zoo.scalars (id, n, f8, f4, ts, tsn, d, t, by, ia, ta, j)
VALUES (-1, 'NaN', 'Infinity', '-Infinity', 'infinity', '-infinity', '4713-01-01 BC', '', '', '{}', '{}', '{}'),
       (-2, 123456789012345678901234567890.123456789, '-0', 'NaN', '-infinity', 'infinity', 'infinity', ' ', '\x00', '{{1,2},{3,4}}', '{{a,b},{c,NULL}}', '[]'),
       (-3, -0.000000001, 1e308, 1e-38, '0001-01-01 00:00:00+00', '294276-12-31 23:59:59', '5874897-12-31', E'\\N', '\x5c4e', ARRAY[2147483647, -2147483648], ARRAY[E'\\N'], '"\\N"');

CREATE TABLE zoo.custom (
    id     integer PRIMARY KEY,
    m      zoo.mood,
    p      zoo.positive,
    l      zoo.label,
    ma     zoo.mood[],
    pa     zoo.positive[],
    pr     zoo.pair,
    note   text
);

INSERT INTO zoo.custom
SELECT g,
       (enum_range(NULL::zoo.mood))[1 + g % 4],
       g,
       'label ' || g || E'\n\\',
       ARRAY[(enum_range(NULL::zoo.mood))[1 + g % 4], 'it''s "complicated"'::zoo.mood, NULL],
       ARRAY[g, g + 1]::zoo.positive[],
       ROW(g, E'pair\t"' || g || '"')::zoo.pair,
       CASE WHEN g % 10 = 0 THEN NULL ELSE E'note\r\n' || g END
  FROM generate_series(1, 500) g;
INSERT INTO zoo.custom (id) VALUES (0);

CREATE TABLE zoo.empty (
    id  integer PRIMARY KEY,
    m   zoo.mood
);

-- Secondary indexes: the copy rebuilds the plain ones after the rows are in (in the same
-- transaction) and leaves the others alone.
CREATE INDEX scalars_ts ON zoo.scalars (ts);
CREATE INDEX scalars_lower_t ON zoo.scalars (lower(t)) WHERE t IS NOT NULL;
CREATE INDEX scalars_j ON zoo.scalars USING gin (j jsonb_path_ops);
CREATE INDEX scalars_vc ON zoo.scalars (vc);
COMMENT ON INDEX zoo.scalars_vc IS 'commented: kept during the copy';
CREATE UNIQUE INDEX custom_p ON zoo.custom (p);
