EXTENSION = ec_feed
EXTVERSION = $(shell grep default_version $(EXTENSION).control | sed -E "s/.*'(.*)'/\1/")

MODULE_big = ec_feed
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))
HEADERS = $(wildcard src/*.h)

DATA = $(wildcard sql/$(EXTENSION)--*.sql)

TESTS = $(wildcard test/sql/*.sql)
REGRESS = $(patsubst test/sql/%.sql,%,$(TESTS))
REGRESS_OPTS = --inputdir=test --load-extension=$(EXTENSION)

ISOLATION = $(patsubst test/specs/%.spec,%,$(wildcard test/specs/*.spec))
ISOLATION_OPTS = --inputdir=test --load-extension=$(EXTENSION)

TAP_TESTS = 1
PROVE_TESTS = $(wildcard test/t/*.pl)

PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): $(HEADERS)
