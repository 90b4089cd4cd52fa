/*
 * Slates and engine state through the C ABI, as a host meets them across
 * restarts (issue 12), on small synthetic engines (no ONNX Runtime):
 *
 *   - an empty slate (no candidates, or all excluded) is refused, records no
 *     decision, and the snapshot saved next loads;
 *   - decision ids are never reissued after a restart, even from the same
 *     snapshot twice: feedback meant for a slate lost with the process is
 *     GW_ERR_UNKNOWN_DECISION; replicas tag their ids; replica_id is checked;
 *   - inflated clicks (a slot twice, a million times, beyond the visible
 *     slots) are refused without using up the decision; clicks never exceed
 *     impressions;
 *   - slate sizes and candidate lists are capped (GW_MAX_SLATE_SIZE,
 *     GW_MAX_CANDIDATES);
 *   - a NaN host score is GW_ERR_NON_FINITE; a segment the engine does not
 *     serve is GW_ERR_UNKNOWN_SEGMENT and is not counted;
 *   - the engine counters (upserts, deletes, lookalikes, snapshots) survive
 *     a save and load;
 *   - gw_engine_posterior reads back each level's Beta parameters (known
 *     answers after known feedback), refuses unknown segments and writes
 *     nothing on failure.
 *
 * Built and run by scripts/c-tests (plain, with ASan/UBSan, under valgrind).
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "groupwise.h"

#define DIM 8
#define N_USERS 300
#define N_CLUSTERS 3
#define S_U64 0xDEADBEEFDEADBEEFULL

static char tmpdir[64];

static void tmp_path(char *out, size_t len, const char *name) {
    snprintf(out, len, "%s/%s", tmpdir, name);
}

static struct gw_engine_stats stats_of(const gw_engine *e) {
    struct gw_engine_stats s;
    memset(&s, 0, sizeof s);
    CHECK_RESULT(gw_engine_get_stats(e, &s), GW_OK);
    return s;
}

/* Opens an engine from a JSON config (aborts if it cannot). */
static gw_engine *open_json(const char *json) {
    gw_engine *e = NULL;
    CHECK_RESULT(gw_engine_open_json(json, strlen(json), &e), GW_OK);
    if (e == NULL) abort();
    return e;
}

/* Upserts users 1..n (N_CLUSTERS clusters) into `e`. */
static void fill(gw_engine *e, size_t n) {
    float v[DIM];
    for (uint64_t u = 1; u <= n; u++) {
        synthetic_vector(u, N_CLUSTERS, v, DIM);
        CHECK_RESULT(gw_engine_upsert_embedding(e, u, v, DIM, NULL), GW_OK);
    }
}

static gw_engine *synthetic_engine(size_t n) {
    gw_engine *e = open_json("{\"dim\": 8, \"segments\": {\"min_size\": 20}}");
    fill(e, n);
    return e;
}

static gw_slate_request request(const uint64_t *cands, size_t n, size_t slate) {
    gw_slate_request r;
    memset(&r, 0, sizeof r);
    r.candidates = cands;
    r.n_candidates = n;
    r.slate_size = slate;
    r.policy = GW_POLICY_IN_SLATE_TS;
    return r;
}

/* Candidate items 100..100+n-1. */
static void candidates(uint64_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = 100 + i;
}

/* One decision of `slate` slots from `n` (<= 32) candidates for `user`;
 * writes the items to `items` (may be NULL) and returns the id. */
static uint64_t decide(const gw_engine *e, uint64_t user, size_t n, size_t slate,
                       uint64_t *items) {
    uint64_t cands[32];
    candidates(cands, n);
    gw_slate_request r = request(cands, n, slate);
    r.user = user;
    r.has_user = true;
    uint64_t got[32];
    double scores[32];
    size_t len = 0;
    uint64_t decision = S_U64;
    CHECK_RESULT(gw_engine_decide(e, &r, got, scores, 32, &len, &decision), GW_OK);
    CHECK(len == slate && decision != S_U64);
    if (items != NULL) memcpy(items, got, slate * sizeof *got);
    return decision;
}

static void test_empty_slates_are_refused_and_snapshots_stay_loadable(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    (void)decide(e, 1, 10, 3, NULL); /* left open in the snapshot */
    uint64_t items[8];
    double scores[8];
    size_t len = 0;
    uint64_t decision = S_U64;

    /* No candidates at all. */
    gw_slate_request r = request(NULL, 0, 3);
    CHECK_FAILS(gw_engine_decide(e, &r, items, scores, 8, &len, &decision),
                GW_ERR_INVALID_ARGUMENT, "`candidates`");
    char *msg = last_error();
    CHECK(strstr(msg, "none given") != NULL);
    free(msg);
    /* Every candidate excluded (some twice over, as duplicates). */
    uint64_t cands[5] = {7, 8, 9, 7, 9};
    uint64_t exclude[3] = {9, 8, 7};
    r = request(cands, 5, 2);
    r.exclude = exclude;
    r.n_exclude = 3;
    for (uint32_t policy = 0; policy < 4; policy++) {
        r.policy = policy;
        CHECK_FAILS(gw_engine_decide(e, &r, items, scores, 8, &len, &decision),
                    GW_ERR_INVALID_ARGUMENT, "all 5 candidates were excluded");
    }
    CHECK(decision == S_U64);
    struct gw_engine_stats s = stats_of(e);
    CHECK(s.decisions == 1);

    /* One candidate left: a slate of one. */
    r.n_exclude = 2;
    CHECK_RESULT(gw_engine_decide(e, &r, items, scores, 8, &len, &decision), GW_OK);
    CHECK(len == 1 && items[0] == 7);

    /* What was saved loads (it used to fail: "pending decision has no items"). */
    char path[128];
    tmp_path(path, sizeof path, "empty.gw");
    CHECK_RESULT(gw_engine_save(e, path), GW_OK);
    gw_snapshot_info info;
    CHECK_RESULT(gw_snapshot_inspect(path, &info), GW_OK);
    CHECK(info.pending_decisions == 2);
    gw_engine *loaded = NULL;
    CHECK_RESULT(gw_engine_load(path, false, &loaded), GW_OK);
    if (loaded != NULL) {
        CHECK(stats_of(loaded).decisions == 2);
        size_t click[1] = {0};
        CHECK_RESULT(gw_engine_feedback(loaded, decision, click, 1, GW_ALL_VISIBLE, NULL), GW_OK);
    }
    gw_engine_free(loaded);
    CHECK(remove(path) == 0);
    gw_engine_free(e);
}

static void test_ids_are_never_reissued_after_a_restart(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    char path[128];
    tmp_path(path, sizeof path, "restart.gw");
    uint64_t d1 = decide(e, 5, 12, 3, NULL);
    size_t click[1] = {1};
    CHECK_RESULT(gw_engine_feedback(e, d1, click, 1, GW_ALL_VISIBLE, NULL), GW_OK);
    CHECK_RESULT(gw_engine_save(e, path), GW_OK);
    /* Decided after the save (items 10-12 in the issue); then the process dies. */
    uint64_t lost_items[3];
    uint64_t lost = decide(e, 5, 12, 3, lost_items);
    CHECK(lost > d1);
    gw_engine_free(e);

    uint64_t previous = lost;
    for (int restart = 0; restart < 2; restart++) { /* the same snapshot, twice */
        gw_engine *r = NULL;
        CHECK_RESULT(gw_engine_load(path, false, &r), GW_OK);
        if (r == NULL) abort();
        uint64_t items[3];
        uint64_t next = decide(r, 5, 12, 3, items);
        CHECK(next != lost && next != d1 && next != previous);
        CHECK(next > lost); /* ids follow the clock */
        /* The same draws as the lost decision: they follow the number of
         * decisions made, not the id. */
        CHECK(memcmp(items, lost_items, sizeof items) == 0);
        /* Feedback meant for the lost slate is refused as unknown, not
         * credited to the new one. */
        char expected[64];
        snprintf(expected, sizeof expected, "decision %llu", (unsigned long long)lost);
        CHECK_FAILS(gw_engine_feedback(r, lost, click, 1, GW_ALL_VISIBLE, NULL),
                    GW_ERR_UNKNOWN_DECISION, expected);
        CHECK_RESULT(gw_engine_feedback(r, next, click, 1, GW_ALL_VISIBLE, NULL), GW_OK);
        struct gw_engine_stats s = stats_of(r);
        CHECK(s.rejected_unknown_decision == 1 && s.feedback_applied == 2);
        /* Strictly increasing within the process. */
        uint64_t last = next;
        for (int i = 0; i < 100; i++) {
            uint64_t d = decide(r, 6, 12, 2, NULL);
            CHECK(d > last);
            last = d;
        }
        previous = next;
        gw_engine_free(r);
    }
    CHECK(remove(path) == 0);
}

static void test_replica_ids(void) {
    gw_engine *out = (gw_engine *)&tmpdir;
    const char *too_big = "{\"dim\": 8, \"replica_id\": 1024}";
    CHECK_FAILS(gw_engine_open_json(too_big, strlen(too_big), &out), GW_ERR_INVALID_ARGUMENT,
                "replica_id");
    CHECK(out == (gw_engine *)&tmpdir);
    gw_engine *a = open_json("{\"dim\": 8, \"replica_id\": 1}");
    gw_engine *b = open_json("{\"dim\": 8, \"replica_id\": 1023}");
    CHECK(GW_MAX_REPLICA_ID == 1023);
    enum { N = 300 };
    uint64_t ids[2 * N];
    for (size_t i = 0; i < N; i++) {
        ids[2 * i] = decide(a, 0 + 1, 5, 2, NULL);
        ids[2 * i + 1] = decide(b, 0 + 1, 5, 2, NULL);
        CHECK((ids[2 * i] & 1023) == 1 && (ids[2 * i + 1] & 1023) == 1023);
    }
    for (size_t i = 0; i < 2 * N; i++) {
        for (size_t j = 0; j < i; j++) {
            if (ids[i] == ids[j]) {
                fprintf(stderr, "id %llu issued twice\n", (unsigned long long)ids[i]);
                CHECK(0);
            }
        }
    }
    gw_engine_free(a);
    gw_engine_free(b);
}

static void test_inflated_clicks_are_refused(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    uint64_t d = decide(e, 3, 20, 10, NULL);
    size_t same[4] = {2, 2, 2, 2};
    CHECK_FAILS(gw_engine_feedback(e, d, same, 4, GW_ALL_VISIBLE, NULL), GW_ERR_INVALID_ARGUMENT,
                "slot 2 is clicked more than once");
    size_t *million = calloc(1000000, sizeof *million); /* slot 0, a million times */
    if (million == NULL) abort();
    CHECK_FAILS(gw_engine_feedback(e, d, million, 1000000, GW_ALL_VISIBLE, NULL),
                GW_ERR_INVALID_ARGUMENT, "`clicks`");
    free(million);
    size_t first[1] = {0};
    CHECK_FAILS(gw_engine_feedback(e, d, first, 1, 0, NULL), GW_ERR_INVALID_ARGUMENT,
                "only the first 0 of the 10 slots were visible");
    size_t seventh[1] = {7};
    CHECK_FAILS(gw_engine_feedback(e, d, seventh, 1, 3, NULL), GW_ERR_INVALID_ARGUMENT,
                "slot 7 was clicked");
    size_t past[1] = {10};
    CHECK_FAILS(gw_engine_feedback(e, d, past, 1, GW_ALL_VISIBLE, NULL), GW_ERR_INVALID_ARGUMENT,
                "outside the slate");
    struct gw_engine_stats s = stats_of(e);
    CHECK(s.rejected_bad_position == 5 && s.feedback_applied == 0);
    CHECK(s.clicks == 0 && s.impressions == 0);

    /* The decision was not used up: the corrected feedback is applied. A
     * `visible` larger than the slate means all of it. */
    size_t good[2] = {0, 7};
    CHECK_RESULT(gw_engine_feedback(e, d, good, 2, 50, NULL), GW_OK);
    s = stats_of(e);
    CHECK(s.feedback_applied == 1 && s.clicks == 2 && s.impressions == 10);

    /* Random feedback, valid or not: clicks never exceed impressions, and
     * only accepted clicks count. */
    uint64_t state = 4242, clicks = 2, impressions = 10;
    for (int i = 0; i < 400; i++) {
        size_t slate = 1 + (size_t)(rng_next(&state) % 8);
        uint64_t decision = decide(e, 1 + rng_next(&state) % N_USERS, 20, slate, NULL);
        size_t visible = (size_t)(rng_next(&state) % (slate + 3));
        size_t shown = visible < slate ? visible : slate;
        size_t clicked[12];
        size_t n = 0;
        for (size_t p = 0; p < shown; p++) {
            if (rng_uniform(&state) < 0.3) clicked[n++] = p;
        }
        int how = (int)(rng_next(&state) % 4);
        if (how == 0 && n > 0) {
            clicked[n++] = clicked[0];       /* twice */
        } else if (how == 1) {
            clicked[n++] = shown;            /* hidden or past the slate */
        }
        gw_result rc = gw_engine_feedback(e, decision, clicked, n, visible, NULL);
        if (how <= 1 && (how == 1 || n > 1)) {
            CHECK(rc == GW_ERR_INVALID_ARGUMENT);
        }
        if (rc == GW_OK) {
            clicks += n;
            impressions += shown;
        }
        s = stats_of(e);
        CHECK(s.clicks <= s.impressions);
    }
    CHECK(s.clicks == clicks && s.impressions == impressions);
    gw_engine_free(e);
}

static void test_slate_sizes_and_candidates_are_capped(void) {
    gw_engine *e = synthetic_engine(50);
    /* The request: a slate of a million from a million candidates. */
    size_t n = 1000000;
    uint64_t *many = malloc(n * sizeof *many);
    uint64_t *items = malloc(n * sizeof *items);
    double *scores = malloc(n * sizeof *scores);
    if (many == NULL || items == NULL || scores == NULL) abort();
    for (size_t i = 0; i < n; i++) many[i] = i;
    size_t len = 0;
    uint64_t decision = S_U64;
    gw_slate_request r = request(many, n, n);
    CHECK_FAILS(gw_engine_decide(e, &r, items, scores, n, &len, &decision),
                GW_ERR_INVALID_ARGUMENT, "`slate_size`");
    r.slate_size = GW_MAX_SLATE_SIZE + 1;
    r.n_candidates = 1000;
    CHECK_FAILS(gw_engine_decide(e, &r, items, scores, n, &len, &decision),
                GW_ERR_INVALID_ARGUMENT, "`slate_size`");
    /* The size query of an oversized slate is bounded by the cap. */
    CHECK_RESULT(gw_engine_decide(e, &r, NULL, NULL, 0, &len, &decision),
                 GW_ERR_BUFFER_TOO_SMALL);
    CHECK(len == GW_MAX_SLATE_SIZE);
    r.slate_size = 3;
    r.n_candidates = GW_MAX_CANDIDATES + 1;
    CHECK_FAILS(gw_engine_decide(e, &r, items, scores, n, &len, &decision),
                GW_ERR_INVALID_ARGUMENT, "`candidates`");
    CHECK(decision == S_U64 && stats_of(e).decisions == 0);
    /* At the caps: served. */
    r.slate_size = GW_MAX_SLATE_SIZE;
    r.n_candidates = GW_MAX_CANDIDATES;
    r.policy = GW_POLICY_GREEDY;
    CHECK_RESULT(gw_engine_decide(e, &r, items, scores, n, &len, &decision), GW_OK);
    CHECK(len == GW_MAX_SLATE_SIZE && decision != S_U64);
    free(many);
    free(items);
    free(scores);
    gw_engine_free(e);
}

static void test_non_finite_scores_and_unknown_segments(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    uint64_t cands[4] = {1, 2, 3, 4};
    float host[4] = {0.5f, NAN, 0.5f, 0.5f};
    gw_slate_request r = request(cands, 4, 2);
    r.host_scores = host;
    r.n_host_scores = 4;
    uint64_t items[4];
    double scores[4];
    size_t len = 0;
    uint64_t decision = S_U64;
    CHECK_FAILS(gw_engine_decide(e, &r, items, scores, 4, &len, &decision), GW_ERR_NON_FINITE,
                "host_scores");
    host[1] = INFINITY;
    CHECK_FAILS(gw_engine_decide(e, &r, items, scores, 4, &len, &decision), GW_ERR_NON_FINITE,
                "position 1");
    host[1] = 0.5f;

    /* Before any build, no segment is served. */
    r.has_segment = true;
    r.segment = 0;
    CHECK_FAILS(gw_engine_decide(e, &r, items, scores, 4, &len, &decision),
                GW_ERR_UNKNOWN_SEGMENT, "segment 0");
    size_t n_segments = 0;
    CHECK_RESULT(gw_engine_build_segments(e, &n_segments), GW_OK);
    CHECK(n_segments >= 1);
    r.segment = 4242;
    CHECK_FAILS(gw_engine_decide(e, &r, items, scores, 4, &len, &decision),
                GW_ERR_UNKNOWN_SEGMENT, "segment 4242");
    CHECK(decision == S_U64 && stats_of(e).decisions == 0);
    /* A served segment is fine. */
    uint32_t seg_ids[16];
    CHECK_RESULT(gw_engine_segment_ids(e, seg_ids, 16, &len), GW_OK);
    r.segment = seg_ids[0];
    CHECK_RESULT(gw_engine_decide(e, &r, items, scores, 4, &len, &decision), GW_OK);
    CHECK(stats_of(e).decisions == 1);
    gw_engine_free(e);
}

static void test_engine_counters_survive_a_reload(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    bool deleted = false;
    CHECK_RESULT(gw_engine_delete_user(e, 7, &deleted), GW_OK);
    CHECK(deleted);
    CHECK_RESULT(gw_engine_delete_user(e, 8, &deleted), GW_OK);
    uint64_t seeds[150];
    for (size_t i = 0; i < 150; i++) seeds[i] = i + 10;
    uint64_t ids[5];
    double scores[5];
    size_t len = 0;
    CHECK_RESULT(gw_engine_lookalike(e, seeds, 150, NULL, 0, GW_SIZE_COUNT, 5, GW_SCORER_CENTROID,
                                     ids, scores, 5, &len),
                 GW_OK);
    uint64_t d = decide(e, 3, 10, 3, NULL);
    size_t click[1] = {0};
    CHECK_RESULT(gw_engine_feedback(e, d, click, 1, GW_ALL_VISIBLE, NULL), GW_OK);
    char path[128];
    tmp_path(path, sizeof path, "counters.gw");
    CHECK_RESULT(gw_engine_save(e, path), GW_OK);
    CHECK_RESULT(gw_engine_save(e, path), GW_OK);
    struct gw_engine_stats before = stats_of(e);
    CHECK(before.upserts == N_USERS && before.deletes == 2 && before.lookalikes == 1);
    CHECK(before.snapshots == 2);

    gw_engine *loaded = NULL;
    CHECK_RESULT(gw_engine_load(path, false, &loaded), GW_OK);
    if (loaded == NULL) abort();
    struct gw_engine_stats after = stats_of(loaded);
    CHECK(memcmp(&after, &before, sizeof after) == 0);
    /* The loaded engine's next save is the lineage's third. */
    CHECK_RESULT(gw_engine_save(loaded, path), GW_OK);
    CHECK(stats_of(loaded).snapshots == 3);
    gw_engine_free(loaded);
    CHECK(remove(path) == 0);
    gw_engine_free(e);
}

static bool close_to(double a, double b) { return fabs(a - b) < 1e-9; }

static void test_posterior_read_out(void) {
    /* Cascade clicks, base prior Beta(1, 49), no pooling between segments. */
    gw_engine *e = open_json(
        "{\"dim\": 8, \"segments\": {\"min_size\": 20}, "
        "\"bandit\": {\"click_model\": \"Cascade\", \"pooling_strength\": 0}}");
    fill(e, N_USERS);
    size_t n_segments = 0;
    CHECK_RESULT(gw_engine_build_segments(e, &n_segments), GW_OK);
    uint32_t seg = UINT32_MAX;
    CHECK_RESULT(gw_engine_segment_of(e, 5, &seg), GW_OK);
    CHECK(seg != UINT32_MAX);

    /* Nothing learned: every level is the base prior; no user level. */
    gw_posterior p;
    memset(&p, 0, sizeof p);
    CHECK_RESULT(gw_engine_posterior(e, 100, 0, false, 5, true, NULL, &p), GW_OK);
    CHECK(p.pooled.used && p.segment.used && !p.user.used);
    CHECK(close_to(p.alpha, 1.0) && close_to(p.beta, 49.0) && close_to(p.mean, 0.02));
    CHECK(close_to(p.blended, 0.02) && close_to(p.host_b, 1.0) && p.host_c == 0.0);

    /* User 5 is shown item 100 alone and clicks: one success at every level. */
    uint64_t cands[1] = {100};
    gw_slate_request r = request(cands, 1, 1);
    r.user = 5;
    r.has_user = true;
    uint64_t items[1];
    double scores[1];
    size_t len = 0;
    uint64_t decision = S_U64;
    CHECK_RESULT(gw_engine_decide(e, &r, items, scores, 1, &len, &decision), GW_OK);
    size_t click[1] = {0};
    CHECK_RESULT(gw_engine_feedback(e, decision, click, 1, GW_ALL_VISIBLE, NULL), GW_OK);
    CHECK_RESULT(gw_engine_posterior(e, 100, 0, false, 5, true, NULL, &p), GW_OK);
    CHECK(close_to(p.pooled.successes, 1.0) && close_to(p.pooled.alpha, 2.0));
    CHECK(close_to(p.segment.prior_alpha, 1.0) && close_to(p.segment.prior_beta, 49.0));
    CHECK(close_to(p.segment.alpha, 2.0) && close_to(p.segment.beta, 49.0));
    /* The user level: the segment without the user's click, Beta(1, 49),
     * gives way by 1 / 0.02 = 50 pseudo-counts to the click, down to
     * user_strength 20: Beta(0.4, 19.6) plus the click. */
    CHECK(p.user.used && close_to(p.user.successes, 1.0) && close_to(p.user.failures, 0.0));
    CHECK(close_to(p.user.prior_alpha, 0.4) && close_to(p.user.prior_beta, 19.6));
    CHECK(close_to(p.alpha, 1.4) && close_to(p.beta, 19.6) && close_to(p.mean, 1.4 / 21.0));
    /* Another user of the segment gets the segment's posterior. */
    uint64_t other = 6;
    uint32_t other_seg = UINT32_MAX;
    for (; other < N_USERS; other++) {
        CHECK_RESULT(gw_engine_segment_of(e, other, &other_seg), GW_OK);
        if (other_seg == seg) break;
    }
    CHECK(other_seg == seg);
    CHECK_RESULT(gw_engine_posterior(e, 100, seg, true, other, true, NULL, &p), GW_OK);
    CHECK(!p.user.used && close_to(p.alpha, 2.0) && close_to(p.beta, 49.0));

    /* Unknown segment, NULL output, bad clock: refused, *out untouched. */
    memset(&p, 0x5A, sizeof p);
    gw_posterior before = p;
    CHECK_FAILS(gw_engine_posterior(e, 100, 4242, true, 5, true, NULL, &p),
                GW_ERR_UNKNOWN_SEGMENT, "segment 4242");
    double bad_now = NAN;
    CHECK_FAILS(gw_engine_posterior(e, 100, 0, false, 5, true, &bad_now, &p),
                GW_ERR_INVALID_ARGUMENT, "now");
    CHECK(memcmp(&p, &before, sizeof p) == 0);
    CHECK_FAILS(gw_engine_posterior(e, 100, 0, false, 5, true, NULL, NULL),
                GW_ERR_NULL_ARGUMENT, "out");
    CHECK_FAILS(gw_engine_posterior(NULL, 100, 0, false, 5, true, NULL, &p),
                GW_ERR_NULL_ARGUMENT, "engine");
    /* Read-outs are not decisions. */
    CHECK(stats_of(e).decisions == 1);
    gw_engine_free(e);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gw-test-slates-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_empty_slates_are_refused_and_snapshots_stay_loadable();
    test_ids_are_never_reissued_after_a_restart();
    test_replica_ids();
    test_inflated_clicks_are_refused();
    test_slate_sizes_and_candidates_are_capped();
    test_non_finite_scores_and_unknown_segments();
    test_engine_counters_survive_a_reload();
    test_posterior_read_out();
    if (rmdir(tmpdir) != 0) {
        perror("rmdir");
        CHECK(0);
    }
    return finish("test_slates");
}
