/*
 * Shared helpers of the C tests (test_errors.c, test_threads.c,
 * test_encoder.c): non-aborting checks that count failures, reading the
 * last-error message, and deterministic synthetic embeddings.
 *
 * Header-only (static inline), so scripts/c-tests, which compiles each
 * each ffi/tests/c/ test on its own, needs nothing more.
 */
#ifndef GW_TESTS_CHECK_H
#define GW_TESTS_CHECK_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "groupwise.h"

/* Failures of the whole program (atomic: threads check too). */
static atomic_int check_failures = 0;

/* Like assert(), but never compiled out, and keeps going to report all. */
#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            atomic_fetch_add(&check_failures, 1);                                \
        }                                                                        \
    } while (0)

/* Checks that EXPR returns EXPECTED; on a mismatch prints both names and the
 * thread's last-error message. */
#define CHECK_RESULT(expr, expected)                                             \
    do {                                                                         \
        gw_result got_ = (expr);                                                 \
        gw_result want_ = (expected);                                            \
        if (got_ != want_) {                                                     \
            char *msg_ = last_error();                                           \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", \
                    __FILE__, __LINE__, #expr, gw_result_name(got_),             \
                    gw_result_name(want_), msg_);                                \
            free(msg_);                                                          \
            atomic_fetch_add(&check_failures, 1);                                \
        }                                                                        \
    } while (0)

/* Checks that EXPR fails with EXPECTED and that the calling thread's
 * last-error message then contains NEEDLE (a specific word: the argument's
 * name, the id, the path, ...). */
#define CHECK_FAILS(expr, expected, needle)                                      \
    do {                                                                         \
        gw_result got_ = (expr);                                                 \
        gw_result want_ = (expected);                                            \
        char *msg_ = last_error();                                               \
        if (got_ != want_) {                                                     \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n", \
                    __FILE__, __LINE__, #expr, gw_result_name(got_),             \
                    gw_result_name(want_), msg_);                                \
            atomic_fetch_add(&check_failures, 1);                                \
        } else if (strstr(msg_, (needle)) == NULL) {                             \
            fprintf(stderr, "%s:%d: %s: last error \"%s\" does not mention \"%s\"\n", \
                    __FILE__, __LINE__, #expr, msg_, (needle));                  \
            atomic_fetch_add(&check_failures, 1);                                \
        }                                                                        \
        free(msg_);                                                              \
    } while (0)

/* The calling thread's whole last-error message, malloc'd (free it). Uses the
 * size query: ask for the size, then read. Aborts only if malloc fails. */
static inline char *last_error(void) {
    size_t needed = 0;
    gw_result rc = gw_last_error_message(NULL, 0, &needed);
    if (rc != GW_ERR_BUFFER_TOO_SMALL || needed < 1) {
        fprintf(stderr, "gw_last_error_message size query returned %s, %zu\n",
                gw_result_name(rc), needed);
        atomic_fetch_add(&check_failures, 1);
        needed = 1;
    }
    char *buf = malloc(needed);
    if (buf == NULL) {
        abort();
    }
    buf[0] = '\0';
    size_t written = 0;
    if (gw_last_error_message(buf, needed, &written) != GW_OK || written != needed) {
        fprintf(stderr, "gw_last_error_message read failed\n");
        atomic_fetch_add(&check_failures, 1);
    }
    return buf;
}

/* Ends a test program: prints the verdict, returns main's exit status. */
static inline int finish(const char *name) {
    int n = atomic_load(&check_failures);
    if (n != 0) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, n);
        return 1;
    }
    printf("%s: ok (groupwise %s)\n", name, gw_version());
    return 0;
}

/* xorshift64*: a small deterministic generator (tests must be repeatable). */
static inline uint64_t rng_next(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, 1). */
static inline double rng_uniform(uint64_t *state) {
    return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* Roughly normal, mean 0, sd ~0.58 (sum of 4 uniforms; no libm needed). */
static inline float rng_noise(uint64_t *state) {
    double s = 0.0;
    for (int i = 0; i < 4; i++) {
        s += rng_uniform(state);
    }
    return (float)(s - 2.0);
}

/* Synthetic users: `dim`-dimensional vectors around `clusters` well separated
 * centres (user i belongs to cluster i % clusters; its centre is the basis
 * vector e_(2c mod dim)), with a little noise. Deterministic per `user`. */
static inline void synthetic_vector(uint64_t user, size_t clusters, float *out, size_t dim) {
    uint64_t state = 0x9E3779B97F4A7C15ULL ^ (user * 0xBF58476D1CE4E5B9ULL);
    if (state == 0) {
        state = 1;
    }
    size_t c = (size_t)(user % clusters);
    for (size_t d = 0; d < dim; d++) {
        out[d] = 0.15f * rng_noise(&state);
    }
    out[(2 * c) % dim] += 1.0f;
}

#endif /* GW_TESTS_CHECK_H */
