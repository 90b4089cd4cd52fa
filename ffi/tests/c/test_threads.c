/*
 * One engine shared by 8 pthreads (the header: "every function taking a
 * const gw_engine * may be called concurrently on the same handle").
 *
 * Each thread runs CYCLES decide + feedback cycles on the shared engine, with
 * host scores, every policy and random clicks, interleaved with neighbour
 * queries, upserts of new and existing users, and deliberate failures; the
 * main thread meanwhile reads the counters and, a quarter of the way in,
 * rebuilds the segments and saves a snapshot. Afterwards gw_engine_stats must account for every call
 * exactly: decisions and feedback_applied equal what the threads sent, no
 * feedback was rejected, clicks and impressions add up.
 *
 * The last-error message is per thread: each thread checks that its message
 * is still its own after other threads failed in between (and, behind a
 * barrier, after all threads have failed with distinct messages).
 *
 * GW_THREAD_CYCLES overrides the cycles per thread (default 1000).
 *
 * Built and run by scripts/c-tests (plain, with ASan/UBSan, under valgrind).
 */
#define _POSIX_C_SOURCE 200809L /* pthread_barrier_t, mkdtemp */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "groupwise.h"

#define N_THREADS 8
#define DIM 16
#define N_USERS 400 /* users 1..400, 4 clusters */
#define N_CLUSTERS 4
#define N_ITEMS 200 /* items 1000..1199 */
#define N_CANDIDATES 30
#define SLATE 5


static size_t cycles = 1000;
static gw_engine *engine;
static pthread_barrier_t barrier;

/* What one thread sent, compared with the engine's counters at the end. */
typedef struct {
    int index;
    uint64_t decisions;
    uint64_t feedback;
    uint64_t clicks;
    uint64_t impressions;
    uint64_t new_users;
    uint64_t upserts;
    uint64_t failures;
} worker;

/* Checks that the calling thread's last error mentions `needle`. */
static bool last_error_mentions(const char *needle) {
    char *msg = last_error();
    bool ok = strstr(msg, needle) != NULL;
    if (!ok) {
        fprintf(stderr, "last error \"%s\" does not mention \"%s\"\n", msg, needle);
    }
    free(msg);
    return ok;
}

static void *run_worker(void *arg) {
    worker *w = arg;
    uint64_t rng = 0x1234567ULL + 7919ULL * (uint64_t)w->index;
    float v[DIM];
    uint64_t cands[N_CANDIDATES];
    float host[N_CANDIDATES];
    uint64_t items[SLATE];
    double scores[SLATE];
    uint64_t ids[8];
    float sims[8];
    char expected[64] = "";

    for (size_t i = 0; i < cycles; i++) {
        /* A window of candidates, with host scores in [0, 1]. */
        size_t start = (size_t)(rng_next(&rng) % (N_ITEMS - N_CANDIDATES));
        for (size_t c = 0; c < N_CANDIDATES; c++) {
            cands[c] = 1000 + start + c;
            host[c] = (float)((start + c) % 10) / 10.0f;
        }
        gw_slate_request r;
        memset(&r, 0, sizeof r);
        r.candidates = cands;
        r.n_candidates = N_CANDIDATES;
        r.host_scores = host;
        r.n_host_scores = N_CANDIDATES;
        r.slate_size = SLATE;
        r.policy = (uint32_t)(i % 4); /* every GW_POLICY_* */
        if (i % 3 != 0) {             /* some anonymous traffic */
            r.has_user = true;
            r.user = 1 + rng_next(&rng) % N_USERS;
        }
        r.has_now = true;
        r.now = 1000.0 + (double)i;

        size_t len = 0;
        uint64_t decision = 0;
        gw_result rc = gw_engine_decide(engine, &r, items, scores, SLATE, &len, &decision);
        CHECK_RESULT(rc, GW_OK);
        if (rc != GW_OK) {
            continue;
        }
        w->decisions++;
        CHECK(len == SLATE);
        for (size_t s = 0; s < len; s++) {
            CHECK(items[s] >= cands[0] && items[s] <= cands[N_CANDIDATES - 1]);
            for (size_t t = 0; t < s; t++) {
                CHECK(items[s] != items[t]);
            }
        }

        /* Up to two clicks among the visible slots. */
        size_t visible = (i % 5 == 0) ? GW_ALL_VISIBLE : 1 + (size_t)(rng_next(&rng) % SLATE);
        size_t shown = visible < len ? visible : len;
        size_t clicked[2];
        size_t n_clicked = 0;
        uint64_t roll = rng_next(&rng) % 10;
        if (roll < 3) {
            clicked[n_clicked++] = (size_t)(rng_next(&rng) % shown);
        }
        if (roll == 0 && shown >= 2 && clicked[0] + 1 < shown) {
            clicked[n_clicked++] = clicked[0] + 1;
        }
        double now = r.now + 5.0;
        rc = gw_engine_feedback(engine, decision, clicked, n_clicked, visible, &now);
        CHECK_RESULT(rc, GW_OK);
        if (rc == GW_OK) {
            w->feedback++;
            w->clicks += n_clicked;
            w->impressions += shown;
        }

        /* Concurrent reads and writes of the index. */
        if (i % 10 == 0) {
            uint64_t u = 1 + rng_next(&rng) % N_USERS;
            CHECK_RESULT(gw_engine_neighbors(engine, u, 5, ids, sims, 8, &len), GW_OK);
            CHECK(len == 5);
        }
        if (i % 25 == 0) {
            /* A new user (ids are disjoint per thread) or an existing one. */
            uint64_t u = (i % 50 == 0) ? 100000u * (uint64_t)(w->index + 1) + i
                                       : 1 + rng_next(&rng) % N_USERS;
            synthetic_vector(u, N_CLUSTERS, v, DIM);
            int64_t segment = GW_NO_SEGMENT - 1;
            CHECK_RESULT(gw_engine_upsert_embedding(engine, u, v, DIM, &segment), GW_OK);
            CHECK(segment >= GW_NO_SEGMENT);
            w->upserts++;
            if (u > N_USERS) {
                w->new_users++;
            }
        }

        /* A deliberate failure naming an id of this thread; first check the
         * previous one is still this thread's message, whatever the other
         * threads failed with meanwhile. */
        if (i % 40 == 0) {
            if (expected[0] != '\0') {
                CHECK(last_error_mentions(expected));
            }
            uint64_t unknown = 900000000ULL + 1000000ULL * (uint64_t)w->index + i;
            snprintf(expected, sizeof expected, "user %llu ", (unsigned long long)unknown);
            CHECK_RESULT(gw_engine_neighbors(engine, unknown, 5, ids, sims, 8, &len),
                         GW_ERR_UNKNOWN_USER);
            w->failures++;
            CHECK(last_error_mentions(expected));
        }
    }

    /* Every thread fails with its own message, waits for all the others to
     * have failed too, then reads its message back. */
    char encoder[32];
    snprintf(encoder, sizeof encoder, "encoder-of-thread-%d", w->index);
    uint64_t one_item = 1;
    CHECK_RESULT(gw_engine_upsert_sequence(engine, encoder, 1, &one_item, 1, NULL),
                 GW_ERR_UNKNOWN_ENCODER);
    int rc = pthread_barrier_wait(&barrier);
    CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
    char quoted[40];
    snprintf(quoted, sizeof quoted, "\"%s\"", encoder);
    CHECK(last_error_mentions(quoted));
    return NULL;
}

int main(void) {
    const char *env = getenv("GW_THREAD_CYCLES");
    if (env != NULL && atoi(env) > 0) {
        cycles = (size_t)atoi(env);
    }

    CHECK_RESULT(gw_engine_new(DIM, &engine), GW_OK);
    if (engine == NULL) {
        return 1;
    }
    float v[DIM];
    for (uint64_t u = 1; u <= N_USERS; u++) {
        synthetic_vector(u, N_CLUSTERS, v, DIM);
        CHECK_RESULT(gw_engine_upsert_embedding(engine, u, v, DIM, NULL), GW_OK);
    }
    size_t n_segments = 0;
    CHECK_RESULT(gw_engine_build_segments(engine, &n_segments), GW_OK);
    CHECK(n_segments >= 2);

    /* The main thread's own failure, to check after the threads ran. */
    CHECK_RESULT(gw_engine_segment_of(engine, 777777777, &(uint32_t){0}), GW_ERR_UNKNOWN_USER);
    char *main_message = last_error();
    CHECK(strstr(main_message, "777777777") != NULL);

    char dir[] = "/tmp/gw-test-threads-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char snapshot[64];
    snprintf(snapshot, sizeof snapshot, "%s/engine.gw", dir);

    CHECK(pthread_barrier_init(&barrier, NULL, N_THREADS) == 0);
    pthread_t threads[N_THREADS];
    worker workers[N_THREADS];
    memset(workers, 0, sizeof workers);
    for (int t = 0; t < N_THREADS; t++) {
        workers[t].index = t;
        CHECK(pthread_create(&threads[t], NULL, run_worker, &workers[t]) == 0);
    }

    /* While they run: the counters grow monotonically; once a quarter of
     * the decisions are made, the segments are rebuilt and a snapshot is
     * saved under the threads' traffic. */
    struct gw_engine_stats s;
    uint64_t last_decisions = 0;
    const uint64_t all = (uint64_t)N_THREADS * cycles;
    bool rebuilt = false;
    for (;;) {
        CHECK_RESULT(gw_engine_get_stats(engine, &s), GW_OK);
        CHECK(s.decisions >= last_decisions);
        CHECK(s.feedback_applied <= s.decisions);
        last_decisions = s.decisions;
        if (!rebuilt && s.decisions >= all / 4) {
            CHECK_RESULT(gw_engine_build_segments(engine, &n_segments), GW_OK);
            CHECK_RESULT(gw_engine_save(engine, snapshot), GW_OK);
            CHECK_RESULT(gw_engine_get_stats(engine, &s), GW_OK);
            rebuilt = true;
            if (s.decisions == all) {
                fprintf(stderr, "test_threads: note: the threads finished during the rebuild\n");
            }
        }
        if (rebuilt || s.decisions == all) {
            break;
        }
        nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 1000000}, NULL);
    }
    CHECK(rebuilt);

    worker total;
    memset(&total, 0, sizeof total);
    for (int t = 0; t < N_THREADS; t++) {
        CHECK(pthread_join(threads[t], NULL) == 0);
        total.decisions += workers[t].decisions;
        total.feedback += workers[t].feedback;
        total.clicks += workers[t].clicks;
        total.impressions += workers[t].impressions;
        total.new_users += workers[t].new_users;
        total.upserts += workers[t].upserts;
        total.failures += workers[t].failures;
    }
    CHECK(pthread_barrier_destroy(&barrier) == 0);

    /* Every call is accounted for, exactly. */
    CHECK_RESULT(gw_engine_get_stats(engine, &s), GW_OK);
    CHECK(total.decisions == (uint64_t)N_THREADS * cycles);
    CHECK(total.feedback == total.decisions);
    CHECK(s.decisions == total.decisions);
    CHECK(s.feedback_applied == total.feedback);
    CHECK(s.rejected_unknown_decision == 0);
    CHECK(s.rejected_bad_position == 0);
    CHECK(s.clicks == total.clicks);
    CHECK(s.impressions == total.impressions);
    CHECK(s.users == N_USERS + total.new_users);
    CHECK(s.upserts == N_USERS + total.upserts);
    CHECK(s.snapshots == 1);
    if (atomic_load(&check_failures) != 0) {
        fprintf(stderr,
                "sent: %llu decisions, %llu feedback, %llu clicks, %llu impressions; "
                "engine: %llu, %llu, %llu, %llu (rejected %llu + %llu)\n",
                (unsigned long long)total.decisions, (unsigned long long)total.feedback,
                (unsigned long long)total.clicks, (unsigned long long)total.impressions,
                (unsigned long long)s.decisions, (unsigned long long)s.feedback_applied,
                (unsigned long long)s.clicks, (unsigned long long)s.impressions,
                (unsigned long long)s.rejected_unknown_decision,
                (unsigned long long)s.rejected_bad_position);
    }

    /* No feedback is pending, and the snapshot taken mid-run is valid. */
    gw_snapshot_info info;
    CHECK_RESULT(gw_snapshot_inspect(snapshot, &info), GW_OK);
    CHECK(info.users >= N_USERS && info.feedback_applied <= s.feedback_applied);
    CHECK(remove(snapshot) == 0);
    CHECK(rmdir(dir) == 0);

    /* The threads' failures did not touch the main thread's message. */
    char *after = last_error();
    CHECK(strcmp(main_message, after) == 0);
    free(after);
    free(main_message);

    printf("test_threads: %d threads x %zu cycles: %llu decisions, %llu clicks, %llu "
           "impressions, %llu upserts, %llu deliberate failures\n",
           N_THREADS, cycles, (unsigned long long)s.decisions, (unsigned long long)s.clicks,
           (unsigned long long)s.impressions, (unsigned long long)total.upserts,
           (unsigned long long)total.failures);
    gw_engine_free(engine);
    return finish("test_threads");
}
