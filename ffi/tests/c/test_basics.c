/*
 * The entry points that need no engine: version, result names, and the
 * thread-local last-error message (size query, truncation, per-thread).
 *
 * Built and run by scripts/c-tests (plain, with ASan/UBSan, under valgrind).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "groupwise.h"

static int failures = 0;

/* Like assert(), but never compiled out and keeps going to report all. */
#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                          \
        }                                                                        \
    } while (0)

#define CHECK_RESULT(expr, expected)                                             \
    do {                                                                         \
        gw_result got_ = (expr);                                                 \
        if (got_ != (expected)) {                                                \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__,    \
                    __LINE__, #expr, gw_result_name(got_), gw_result_name(expected)); \
            failures++;                                                          \
        }                                                                        \
    } while (0)

/* Reads the calling thread's whole last-error message into a malloc'd string. */
static char *last_error(void) {
    size_t needed = 0;
    CHECK_RESULT(gw_last_error_message(NULL, 0, &needed), GW_ERR_BUFFER_TOO_SMALL);
    CHECK(needed >= 1);
    char *buf = malloc(needed);
    if (buf == NULL) {
        abort();
    }
    size_t written = 0;
    CHECK_RESULT(gw_last_error_message(buf, needed, &written), GW_OK);
    CHECK(written == needed);
    CHECK(strlen(buf) == needed - 1);
    return buf;
}

static void test_version(void) {
    const char *v = gw_version();
    CHECK(v != NULL);
    CHECK(v == gw_version()); /* static storage, same pointer every time */
    /* MAJOR.MINOR.PATCH, digits and two dots at least. */
    int dots = 0;
    for (const char *p = v; *p != '\0' && *p != '-' && *p != '+'; p++) {
        if (*p == '.') {
            dots++;
        } else {
            CHECK(isdigit((unsigned char)*p));
        }
    }
    CHECK(dots == 2);
}

static void test_result_names(void) {
    CHECK(strcmp(gw_result_name(GW_OK), "GW_OK") == 0);
    CHECK(strcmp(gw_result_name(GW_ERR_NULL_ARGUMENT), "GW_ERR_NULL_ARGUMENT") == 0);
    CHECK(strcmp(gw_result_name(GW_ERR_BUFFER_TOO_SMALL), "GW_ERR_BUFFER_TOO_SMALL") == 0);
    CHECK(strcmp(gw_result_name(GW_ERR_PANIC), "GW_ERR_PANIC") == 0);
    CHECK(strcmp(gw_result_name(9999), "GW_ERR_UNKNOWN_CODE") == 0);
    CHECK(strcmp(gw_result_name(GW_ERR_PANIC + 1), "GW_ERR_UNKNOWN_CODE") == 0);
    /* Every code up to the last has its own GW_ name. */
    for (uint32_t a = GW_OK; a <= GW_ERR_PANIC; a++) {
        const char *name = gw_result_name(a);
        CHECK(strncmp(name, "GW_", 3) == 0);
        CHECK(strcmp(name, "GW_ERR_UNKNOWN_CODE") != 0);
        for (uint32_t b = GW_OK; b < a; b++) {
            CHECK(strcmp(name, gw_result_name(b)) != 0);
        }
    }
}

static void test_no_error_yet(void) {
    /* Nothing has failed on this thread: the message is "". */
    size_t needed = 12345;
    CHECK_RESULT(gw_last_error_message(NULL, 0, &needed), GW_ERR_BUFFER_TOO_SMALL);
    CHECK(needed == 1);
    char one = 'x';
    CHECK_RESULT(gw_last_error_message(&one, 1, &needed), GW_OK);
    CHECK(one == '\0');
}

static void test_last_error_message(void) {
    char buf[64];

    /* A failure: out_len NULL. It records a message naming the argument. */
    CHECK_RESULT(gw_last_error_message(buf, sizeof buf, NULL), GW_ERR_NULL_ARGUMENT);
    char *full = last_error();
    CHECK(strstr(full, "out_len") != NULL);
    size_t full_len = strlen(full);
    CHECK(full_len > 16); /* long enough for the truncation checks below */

    /* Size query. */
    size_t needed = 0;
    CHECK_RESULT(gw_last_error_message(NULL, 0, &needed), GW_ERR_BUFFER_TOO_SMALL);
    CHECK(needed == full_len + 1);

    /* Too small: truncated, NUL-terminated, the size still reported. */
    char small[8];
    memset(small, 'x', sizeof small);
    needed = 0;
    CHECK_RESULT(gw_last_error_message(small, sizeof small, &needed), GW_ERR_BUFFER_TOO_SMALL);
    CHECK(needed == full_len + 1);
    CHECK(small[sizeof small - 1] == '\0');
    CHECK(strlen(small) == sizeof small - 1);
    CHECK(strncmp(small, full, sizeof small - 1) == 0);

    /* Exactly one byte short: all but the last character. */
    char *short_buf = malloc(full_len);
    if (short_buf == NULL) {
        abort();
    }
    CHECK_RESULT(gw_last_error_message(short_buf, full_len, &needed), GW_ERR_BUFFER_TOO_SMALL);
    CHECK(strlen(short_buf) == full_len - 1);
    CHECK(strncmp(short_buf, full, full_len - 1) == 0);
    free(short_buf);

    /* Reading (even with too-small buffers) did not change the message. */
    char *again = last_error();
    CHECK(strcmp(again, full) == 0);
    free(again);

    /* A NULL buffer with a length is a NULL argument too; out_len is an
     * output, so it is left alone on that failure. */
    needed = 777;
    CHECK_RESULT(gw_last_error_message(NULL, 5, &needed), GW_ERR_NULL_ARGUMENT);
    CHECK(needed == 777);
    char *buf_msg = last_error();
    CHECK(strstr(buf_msg, "buf") != NULL);
    CHECK(strcmp(buf_msg, full) != 0);
    free(buf_msg);
    free(full);
}

/* Runs on a second thread: sees no error of the main thread, makes its own. */
static void *other_thread(void *arg) {
    int *ok = arg;
    size_t needed = 0;
    *ok = gw_last_error_message(NULL, 0, &needed) == GW_ERR_BUFFER_TOO_SMALL && needed == 1;
    char buf[8];
    *ok = *ok && gw_last_error_message(buf, sizeof buf, NULL) == GW_ERR_NULL_ARGUMENT;
    *ok = *ok && gw_last_error_message(NULL, 0, &needed) == GW_ERR_BUFFER_TOO_SMALL && needed > 1;
    return NULL;
}

static void test_last_error_is_per_thread(void) {
    size_t needed = 0;
    CHECK_RESULT(gw_last_error_message(NULL, 3, &needed), GW_ERR_NULL_ARGUMENT);
    char *before = last_error();

    pthread_t thread;
    int ok = 0;
    CHECK(pthread_create(&thread, NULL, other_thread, &ok) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(ok);

    char *after = last_error();
    CHECK(strcmp(before, after) == 0); /* the other thread's failure is its own */
    free(before);
    free(after);
}

int main(void) {
    test_version();
    test_result_names();
    test_no_error_yet(); /* must run before anything fails on this thread */
    test_last_error_message();
    test_last_error_is_per_thread();
    if (failures != 0) {
        fprintf(stderr, "test_basics: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_basics: ok (groupwise %s)\n", gw_version());
    return 0;
}
