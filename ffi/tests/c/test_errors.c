/*
 * Every error path of the engine's C ABI, on small synthetic engines
 * (gw_engine_new(8) with a few hundred generated vectors; no ONNX Runtime):
 *
 *   - a NULL engine handle on every entry point, NULL out-parameters and
 *     NULL buffers with a non-zero length        -> GW_ERR_NULL_ARGUMENT
 *   - too-small buffers                           -> GW_ERR_BUFFER_TOO_SMALL,
 *     *out_len set, the buffers untouched (sentinels), no decision spent
 *   - wrong dimension / shape                     -> GW_ERR_DIMENSION_MISMATCH
 *   - NaN and infinities (vectors, host scores)   -> GW_ERR_NON_FINITE
 *   - unknown user / segment / decision / encoder, no segments, too few seeds
 *   - invalid policy / scorer / size / slot values -> GW_ERR_INVALID_ARGUMENT
 *   - invalid UTF-8, bad JSON configs, bad config files
 *   - corrupt snapshots (bit flip, truncation, garbage, empty) from both
 *     gw_engine_load and gw_snapshot_inspect, missing files -> GW_ERR_IO
 *   - repeated feedback, replica deltas: garbage, damaged, duplicates
 *   - special files: /dev/zero, /dev/urandom, a FIFO and a folder are refused
 *     for load/inspect (GW_ERR_IO naming what they are, no endless read or
 *     hang), a FIFO is not replaced by a save, a header declaring more than
 *     the file holds is corrupt
 *   - configs that used to abort or hang the host at the first use
 *     (ef 4e9, dim SIZE_MAX, lookalike iterations 2^64-1, ...) and unknown
 *     nested fields: GW_ERR_INVALID_ARGUMENT naming the key, the process
 *     survives; a huge k answers with the population
 *
 * Each failure also checks that the outputs are unchanged and that the last
 * error message names something specific (the argument, the id, the path).
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
#include <sys/stat.h> /* mkfifo, stat */
#include <unistd.h>

#include "check.h"
#include "groupwise.h"

#define DIM 8
#define N_USERS 300      /* users 1..300 */
#define N_CLUSTERS 3     /* well separated: segments of ~100 */
#define UNKNOWN_USER 987654321ULL

/* Sentinels: what an output holds before a failing call, and still after. */
#define S_U64 0xDEADBEEFDEADBEEFULL
#define S_U32 0xDEADBEEFU
#define S_I64 (-777)
#define S_SIZE ((size_t)0xA5A5A5A5U)
#define S_F32 (-7.25f)
#define S_F64 (-7.25)


static char tmpdir[64];

static void tmp_path(char *out, size_t len, const char *name) {
    snprintf(out, len, "%s/%s", tmpdir, name);
}

static void fill_u64(uint64_t *a, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = S_U64;
}
static void fill_f32(float *a, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = S_F32;
}
static void fill_f64(double *a, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = S_F64;
}
static void fill_u32(uint32_t *a, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = S_U32;
}
static bool all_u64(const uint64_t *a, size_t n) {
    for (size_t i = 0; i < n; i++) if (a[i] != S_U64) return false;
    return true;
}
static bool all_f32(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++) if (a[i] != S_F32) return false;
    return true;
}
static bool all_f64(const double *a, size_t n) {
    for (size_t i = 0; i < n; i++) if (a[i] != S_F64) return false;
    return true;
}
static bool all_u32(const uint32_t *a, size_t n) {
    for (size_t i = 0; i < n; i++) if (a[i] != S_U32) return false;
    return true;
}

static struct gw_engine_stats stats_of(const gw_engine *e) {
    struct gw_engine_stats s;
    memset(&s, 0, sizeof s);
    CHECK_RESULT(gw_engine_get_stats(e, &s), GW_OK);
    return s;
}

/* An engine of dimension DIM holding users 1..n (N_CLUSTERS clusters). */
static gw_engine *synthetic_engine(size_t n) {
    gw_engine *e = NULL;
    CHECK_RESULT(gw_engine_new(DIM, &e), GW_OK);
    if (e == NULL) {
        abort();
    }
    float v[DIM];
    for (uint64_t u = 1; u <= n; u++) {
        synthetic_vector(u, N_CLUSTERS, v, DIM);
        CHECK_RESULT(gw_engine_upsert_embedding(e, u, v, DIM, NULL), GW_OK);
    }
    return e;
}

/* Candidate items 100..100+n-1. */
static void candidates(uint64_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = 100 + i;
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

/* Makes one decision of `slate` slots on 10 candidates; returns its id. */
static uint64_t decide_one(const gw_engine *e, uint64_t user, size_t slate) {
    uint64_t cands[10];
    candidates(cands, 10);
    gw_slate_request r = request(cands, 10, slate);
    r.user = user;
    r.has_user = user != 0;
    uint64_t items[10];
    double scores[10];
    size_t len = 0;
    uint64_t decision = 0;
    CHECK_RESULT(gw_engine_decide(e, &r, items, scores, 10, &len, &decision), GW_OK);
    CHECK(len == slate);
    return decision;
}

/* ------------------------------------------------------------------------ */

static void test_null_engine_everywhere(void) {
    const gw_engine *none = NULL;
    float v[DIM] = {1, 0, 0, 0, 0, 0, 0, 0};
    uint64_t items[4] = {1, 2, 3, 4};
    uint64_t ids[4];
    float sims[4];
    double scores[4];
    uint32_t seg_ids[4];
    size_t len = S_SIZE;
    int64_t seg64 = S_I64;
    uint32_t seg32 = S_U32;
    bool flag = true;
    fill_u64(ids, 4);
    fill_f32(sims, 4);
    fill_f64(scores, 4);
    fill_u32(seg_ids, 4);

    CHECK_FAILS(gw_engine_save(none, "/tmp/never.gw"), GW_ERR_NULL_ARGUMENT, "`engine`");
    CHECK_FAILS(gw_engine_load_encoder(none, "seq", "models/ml100k-seq.onnx"),
                GW_ERR_NULL_ARGUMENT, "`engine`");
    CHECK_FAILS(gw_engine_upsert_embedding(none, 1, v, DIM, &seg64), GW_ERR_NULL_ARGUMENT,
                "`engine`");
    CHECK_FAILS(gw_engine_upsert_features(none, "bag", 1, v, DIM, &seg64), GW_ERR_NULL_ARGUMENT,
                "`engine`");
    CHECK_FAILS(gw_engine_upsert_sequence(none, "seq", 1, items, 4, &seg64), GW_ERR_NULL_ARGUMENT,
                "`engine`");
    CHECK_FAILS(gw_engine_delete_user(none, 1, &flag), GW_ERR_NULL_ARGUMENT, "`engine`");
    CHECK_FAILS(gw_engine_neighbors(none, 1, 4, ids, sims, 4, &len), GW_ERR_NULL_ARGUMENT,
                "`engine`");
    CHECK_FAILS(gw_engine_search(none, v, DIM, 4, ids, sims, 4, &len), GW_ERR_NULL_ARGUMENT,
                "`engine`");
    CHECK_FAILS(gw_engine_lookalike(none, items, 4, NULL, 0, GW_SIZE_COUNT, 4, GW_SCORER_KNN, ids,
                                    scores, 4, &len),
                GW_ERR_NULL_ARGUMENT, "`engine`");
    CHECK_FAILS(gw_engine_build_segments(none, &len), GW_ERR_NULL_ARGUMENT, "`engine`");
    CHECK_FAILS(gw_engine_segment_of(none, 1, &seg32), GW_ERR_NULL_ARGUMENT, "`engine`");
    CHECK_FAILS(gw_engine_segment_ids(none, seg_ids, 4, &len), GW_ERR_NULL_ARGUMENT, "`engine`");
    gw_segment_profile profile = {S_U32, S_SIZE, S_F64};
    CHECK_FAILS(gw_engine_segment_profile(none, 0, &profile, ids, 4, &len), GW_ERR_NULL_ARGUMENT,
                "`engine`");
    struct gw_engine_stats stats;
    memset(&stats, 0xA5, sizeof stats);
    struct gw_engine_stats stats_before = stats;
    CHECK_FAILS(gw_engine_get_stats(none, &stats), GW_ERR_NULL_ARGUMENT, "`engine`");
    CHECK(memcmp(&stats, &stats_before, sizeof stats) == 0);

    gw_slate_request r = request(items, 4, 2);
    uint64_t decision = S_U64;
    CHECK_FAILS(gw_engine_decide(none, &r, ids, scores, 4, &len, &decision), GW_ERR_NULL_ARGUMENT,
                "`engine`");
    size_t clicked[1] = {0};
    CHECK_FAILS(gw_engine_feedback(none, 1, clicked, 1, GW_ALL_VISIBLE, NULL),
                GW_ERR_NULL_ARGUMENT, "`engine`");
    gw_bytes *delta = (gw_bytes *)&flag; /* any non-NULL value: must stay */
    CHECK_FAILS(gw_engine_export_delta(none, &delta), GW_ERR_NULL_ARGUMENT, "`engine`");
    CHECK(delta == (gw_bytes *)&flag);
    uint8_t bytes[4] = {1, 2, 3, 4};
    CHECK_FAILS(gw_engine_merge_delta(none, bytes, 4, &flag), GW_ERR_NULL_ARGUMENT, "`engine`");

    /* The bytes handle too. */
    const uint8_t *data = bytes;
    CHECK_FAILS(gw_bytes_data(NULL, &data, &len), GW_ERR_NULL_ARGUMENT, "`bytes`");
    CHECK(data == bytes);

    /* Nothing was written anywhere. */
    CHECK(len == S_SIZE);
    CHECK(seg64 == S_I64);
    CHECK(seg32 == S_U32);
    CHECK(flag == true);
    CHECK(decision == S_U64);
    CHECK(all_u64(ids, 4) && all_f32(sims, 4) && all_f64(scores, 4) && all_u32(seg_ids, 4));
    CHECK(profile.id == S_U32 && profile.size == S_SIZE && profile.cohesion == S_F64);

    /* Freeing NULL is a no-op. */
    gw_engine_free(NULL);
    gw_bytes_free(NULL);
}

static void test_null_arguments(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    struct gw_engine_stats before = stats_of(e);
    float v[DIM];
    synthetic_vector(1, N_CLUSTERS, v, DIM);
    uint64_t ids[8];
    float sims[8];
    double scores[8];
    uint32_t seg_ids[8];
    size_t len = S_SIZE;
    fill_u64(ids, 8);
    fill_f32(sims, 8);
    fill_f64(scores, 8);
    fill_u32(seg_ids, 8);

    /* Constructors: the out-parameter, the inputs. */
    CHECK_FAILS(gw_engine_new(DIM, NULL), GW_ERR_NULL_ARGUMENT, "`out_engine`");
    const char *json = "{\"dim\": 8}";
    CHECK_FAILS(gw_engine_open_json(json, strlen(json), NULL), GW_ERR_NULL_ARGUMENT,
                "`out_engine`");
    gw_engine *out = (gw_engine *)&len; /* sentinel handle value: must stay */
    CHECK_FAILS(gw_engine_open_json(NULL, 10, &out), GW_ERR_NULL_ARGUMENT, "`json`");
    CHECK_FAILS(gw_engine_open_file(NULL, &out), GW_ERR_NULL_ARGUMENT, "`config_path`");
    CHECK_FAILS(gw_engine_open_file("examples/groupwise.json", NULL), GW_ERR_NULL_ARGUMENT,
                "`out_engine`");
    CHECK_FAILS(gw_engine_load(NULL, false, &out), GW_ERR_NULL_ARGUMENT, "`snapshot_path`");
    CHECK_FAILS(gw_engine_load("/tmp/x.gw", false, NULL), GW_ERR_NULL_ARGUMENT, "`out_engine`");
    CHECK(out == (gw_engine *)&len);
    gw_snapshot_info info;
    CHECK_FAILS(gw_snapshot_inspect(NULL, &info), GW_ERR_NULL_ARGUMENT, "`snapshot_path`");
    CHECK_FAILS(gw_snapshot_inspect("/tmp/x.gw", NULL), GW_ERR_NULL_ARGUMENT, "`out_info`");
    CHECK_FAILS(gw_runtime_init(NULL), GW_ERR_NULL_ARGUMENT, "`library_path`");

    /* Strings and paths. */
    CHECK_FAILS(gw_engine_save(e, NULL), GW_ERR_NULL_ARGUMENT, "`snapshot_path`");
    CHECK_FAILS(gw_engine_load_encoder(e, NULL, "m.onnx"), GW_ERR_NULL_ARGUMENT, "`name`");
    CHECK_FAILS(gw_engine_load_encoder(e, "seq", NULL), GW_ERR_NULL_ARGUMENT, "`model_path`");
    CHECK_FAILS(gw_engine_upsert_features(e, NULL, 1, v, DIM, NULL), GW_ERR_NULL_ARGUMENT,
                "`encoder`");
    uint64_t items[3] = {1, 2, 3};
    CHECK_FAILS(gw_engine_upsert_sequence(e, NULL, 1, items, 3, NULL), GW_ERR_NULL_ARGUMENT,
                "`encoder`");

    /* Input buffers: NULL with a length. (NULL with 0 is the empty input.) */
    int64_t seg64 = S_I64;
    CHECK_FAILS(gw_engine_upsert_embedding(e, 1, NULL, DIM, &seg64), GW_ERR_NULL_ARGUMENT,
                "`vector`");
    CHECK_FAILS(gw_engine_upsert_features(e, "bag", 1, NULL, 4, &seg64), GW_ERR_NULL_ARGUMENT,
                "`features`");
    CHECK_FAILS(gw_engine_upsert_sequence(e, "seq", 1, NULL, 3, &seg64), GW_ERR_NULL_ARGUMENT,
                "`items`");
    CHECK(seg64 == S_I64);
    CHECK_FAILS(gw_engine_search(e, NULL, DIM, 4, ids, sims, 8, &len), GW_ERR_NULL_ARGUMENT,
                "`vector`");
    uint64_t seeds[4] = {1, 2, 3, 4};
    CHECK_FAILS(gw_engine_lookalike(e, NULL, 150, NULL, 0, GW_SIZE_COUNT, 4, GW_SCORER_KNN, ids,
                                    scores, 8, &len),
                GW_ERR_NULL_ARGUMENT, "`seeds`");
    CHECK_FAILS(gw_engine_lookalike(e, seeds, 4, NULL, 2, GW_SIZE_COUNT, 4, GW_SCORER_KNN, ids,
                                    scores, 8, &len),
                GW_ERR_NULL_ARGUMENT, "`exclude`");

    /* Output buffers: NULL with a capacity, and NULL out_len. */
    CHECK_FAILS(gw_engine_neighbors(e, 1, 4, NULL, sims, 8, &len), GW_ERR_NULL_ARGUMENT,
                "`out_ids`");
    CHECK_FAILS(gw_engine_neighbors(e, 1, 4, ids, NULL, 8, &len), GW_ERR_NULL_ARGUMENT,
                "`out_similarities`");
    CHECK_FAILS(gw_engine_neighbors(e, 1, 4, ids, sims, 8, NULL), GW_ERR_NULL_ARGUMENT,
                "`out_len`");
    CHECK_FAILS(gw_engine_search(e, v, DIM, 4, NULL, sims, 8, &len), GW_ERR_NULL_ARGUMENT,
                "`out_ids`");
    CHECK_FAILS(gw_engine_search(e, v, DIM, 4, ids, sims, 8, NULL), GW_ERR_NULL_ARGUMENT,
                "`out_len`");
    CHECK_FAILS(gw_engine_lookalike(e, seeds, 4, NULL, 0, GW_SIZE_COUNT, 4, GW_SCORER_KNN, NULL,
                                    scores, 8, &len),
                GW_ERR_NULL_ARGUMENT, "`out_ids`");
    CHECK_FAILS(gw_engine_lookalike(e, seeds, 4, NULL, 0, GW_SIZE_COUNT, 4, GW_SCORER_KNN, ids,
                                    NULL, 8, &len),
                GW_ERR_NULL_ARGUMENT, "`out_scores`");
    CHECK_FAILS(gw_engine_lookalike(e, seeds, 4, NULL, 0, GW_SIZE_COUNT, 4, GW_SCORER_KNN, ids,
                                    scores, 8, NULL),
                GW_ERR_NULL_ARGUMENT, "`out_len`");
    CHECK_FAILS(gw_engine_segment_of(e, 1, NULL), GW_ERR_NULL_ARGUMENT, "`out_segment`");
    CHECK_FAILS(gw_engine_segment_ids(e, NULL, 8, &len), GW_ERR_NULL_ARGUMENT, "`out_ids`");
    CHECK_FAILS(gw_engine_segment_ids(e, seg_ids, 8, NULL), GW_ERR_NULL_ARGUMENT, "`out_len`");
    gw_segment_profile profile = {S_U32, S_SIZE, S_F64};
    CHECK_FAILS(gw_engine_segment_profile(e, 0, NULL, ids, 8, &len), GW_ERR_NULL_ARGUMENT,
                "`out_profile`");
    CHECK_FAILS(gw_engine_segment_profile(e, 0, &profile, NULL, 8, &len), GW_ERR_NULL_ARGUMENT,
                "`out_representatives`");
    CHECK_FAILS(gw_engine_segment_profile(e, 0, &profile, ids, 8, NULL), GW_ERR_NULL_ARGUMENT,
                "`out_len`");
    CHECK_FAILS(gw_engine_get_stats(e, NULL), GW_ERR_NULL_ARGUMENT, "`out_stats`");

    /* Slates. */
    uint64_t cands[10];
    candidates(cands, 10);
    uint64_t decision = S_U64;
    gw_slate_request r = request(cands, 10, 3);
    CHECK_FAILS(gw_engine_decide(e, NULL, ids, scores, 8, &len, &decision), GW_ERR_NULL_ARGUMENT,
                "`request`");
    r.candidates = NULL;
    CHECK_FAILS(gw_engine_decide(e, &r, ids, scores, 8, &len, &decision), GW_ERR_NULL_ARGUMENT,
                "`candidates`");
    r = request(cands, 10, 3);
    r.n_exclude = 2;
    CHECK_FAILS(gw_engine_decide(e, &r, ids, scores, 8, &len, &decision), GW_ERR_NULL_ARGUMENT,
                "`exclude`");
    r = request(cands, 10, 3);
    r.n_host_scores = 10;
    CHECK_FAILS(gw_engine_decide(e, &r, ids, scores, 8, &len, &decision), GW_ERR_NULL_ARGUMENT,
                "`host_scores`");
    r = request(cands, 10, 3);
    CHECK_FAILS(gw_engine_decide(e, &r, NULL, scores, 8, &len, &decision), GW_ERR_NULL_ARGUMENT,
                "`out_items`");
    CHECK_FAILS(gw_engine_decide(e, &r, ids, NULL, 8, &len, &decision), GW_ERR_NULL_ARGUMENT,
                "`out_scores`");
    CHECK_FAILS(gw_engine_decide(e, &r, ids, scores, 8, NULL, &decision), GW_ERR_NULL_ARGUMENT,
                "`out_len`");
    CHECK_FAILS(gw_engine_decide(e, &r, ids, scores, 8, &len, NULL), GW_ERR_NULL_ARGUMENT,
                "`out_decision`");
    CHECK(decision == S_U64);
    uint64_t d = decide_one(e, 0, 3);
    CHECK_FAILS(gw_engine_feedback(e, d, NULL, 1, GW_ALL_VISIBLE, NULL), GW_ERR_NULL_ARGUMENT,
                "`clicked`");
    /* The refused feedback did not consume the decision. */
    CHECK_RESULT(gw_engine_feedback(e, d, NULL, 0, GW_ALL_VISIBLE, NULL), GW_OK);

    /* Replica deltas. */
    CHECK_FAILS(gw_engine_export_delta(e, NULL), GW_ERR_NULL_ARGUMENT, "`out_delta`");
    bool merged = true;
    CHECK_FAILS(gw_engine_merge_delta(e, NULL, 40, &merged), GW_ERR_NULL_ARGUMENT, "`delta`");
    CHECK(merged == true);

    /* Nothing was written, nothing changed but the one decision. */
    CHECK(len == S_SIZE);
    CHECK(all_u64(ids, 8) && all_f32(sims, 8) && all_f64(scores, 8) && all_u32(seg_ids, 8));
    CHECK(profile.id == S_U32 && profile.size == S_SIZE && profile.cohesion == S_F64);
    struct gw_engine_stats after = stats_of(e);
    CHECK(after.users == before.users && after.upserts == before.upserts);
    CHECK(after.decisions == before.decisions + 1);
    CHECK(after.feedback_applied == 1);
    CHECK(after.rejected_unknown_decision == 0 && after.rejected_bad_position == 0);
    CHECK(after.lookalikes == 0);
    gw_engine_free(e);
}

static void test_buffer_too_small(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    uint64_t ids[16];
    float sims[16];
    double scores[16];
    size_t len = S_SIZE;

    /* Neighbors: size query, too small, exact, roomy. */
    CHECK_RESULT(gw_engine_neighbors(e, 1, 5, NULL, NULL, 0, &len), GW_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    fill_u64(ids, 16);
    fill_f32(sims, 16);
    len = S_SIZE;
    CHECK_FAILS(gw_engine_neighbors(e, 1, 5, ids, sims, 4, &len), GW_ERR_BUFFER_TOO_SMALL,
                "out_len");
    CHECK(len == 5);
    CHECK(all_u64(ids, 16) && all_f32(sims, 16));
    char *msg = last_error();
    CHECK(strstr(msg, "`out_ids`") != NULL && strstr(msg, "5 are needed") != NULL);
    free(msg);
    len = 0;
    CHECK_RESULT(gw_engine_neighbors(e, 1, 5, ids, sims, 5, &len), GW_OK);
    CHECK(len == 5);
    for (size_t i = 0; i < 5; i++) {
        CHECK(ids[i] != 1 && ids[i] % N_CLUSTERS == 1 % N_CLUSTERS); /* same cluster */
        CHECK(sims[i] > 0.5f && sims[i] <= 1.0001f);
    }
    fill_u64(ids, 16);
    fill_f32(sims, 16);
    CHECK_RESULT(gw_engine_neighbors(e, 1, 5, ids, sims, 16, &len), GW_OK);
    CHECK(len == 5);
    CHECK(all_u64(ids + 5, 11) && all_f32(sims + 5, 11)); /* past out_len: untouched */

    /* Search. */
    float v[DIM];
    synthetic_vector(2, N_CLUSTERS, v, DIM);
    fill_u64(ids, 16);
    fill_f32(sims, 16);
    len = S_SIZE;
    CHECK_FAILS(gw_engine_search(e, v, DIM, 7, ids, sims, 6, &len), GW_ERR_BUFFER_TOO_SMALL,
                "`out_ids`");
    CHECK(len == 7);
    CHECK(all_u64(ids, 16) && all_f32(sims, 16));
    CHECK_RESULT(gw_engine_search(e, v, DIM, 7, ids, sims, 7, &len), GW_OK);
    CHECK(len == 7 && ids[0] == 2);

    /* Lookalike: 150 seeds (cluster 0 and 1), expand to 20. */
    uint64_t seeds[150];
    for (size_t i = 0; i < 150; i++) seeds[i] = i + 1;
    fill_u64(ids, 16);
    fill_f64(scores, 16);
    len = S_SIZE;
    CHECK_FAILS(gw_engine_lookalike(e, seeds, 150, NULL, 0, GW_SIZE_COUNT, 20, GW_SCORER_CENTROID,
                                    ids, scores, 16, &len),
                GW_ERR_BUFFER_TOO_SMALL, "`out_ids`");
    CHECK(len == 20);
    CHECK(all_u64(ids, 16) && all_f64(scores, 16));
    uint64_t many[20];
    double many_scores[20];
    CHECK_RESULT(gw_engine_lookalike(e, seeds, 150, NULL, 0, GW_SIZE_COUNT, 20,
                                     GW_SCORER_CENTROID, many, many_scores, 20, &len),
                 GW_OK);
    CHECK(len == 20);
    for (size_t i = 0; i < len; i++) {
        CHECK(many[i] > 150); /* seeds are never returned */
        CHECK(i == 0 || many_scores[i] <= many_scores[i - 1]);
    }
    /* Asking for no users is an error, not "everyone". */
    len = S_SIZE;
    CHECK_FAILS(gw_engine_lookalike(e, seeds, 150, NULL, 0, GW_SIZE_COUNT, 0, GW_SCORER_CENTROID,
                                    NULL, NULL, 0, &len),
                GW_ERR_INVALID_ARGUMENT, "at least 1 user");
    CHECK(len == S_SIZE);

    /* Segments: ids and a profile's representatives. */
    size_t n_segments = 0;
    CHECK_RESULT(gw_engine_build_segments(e, &n_segments), GW_OK);
    CHECK(n_segments >= 1);
    len = S_SIZE;
    CHECK_RESULT(gw_engine_segment_ids(e, NULL, 0, &len), GW_ERR_BUFFER_TOO_SMALL);
    CHECK(len == n_segments);
    uint32_t seg_ids[16];
    fill_u32(seg_ids, 16);
    if (n_segments >= 2) {
        CHECK_FAILS(gw_engine_segment_ids(e, seg_ids, n_segments - 1, &len),
                    GW_ERR_BUFFER_TOO_SMALL, "`out_ids`");
        CHECK(len == n_segments && all_u32(seg_ids, 16));
    }
    CHECK_RESULT(gw_engine_segment_ids(e, seg_ids, 16, &len), GW_OK);
    CHECK(len == n_segments && all_u32(seg_ids + len, 16 - len));
    gw_segment_profile profile = {S_U32, S_SIZE, S_F64};
    size_t reps = S_SIZE;
    CHECK_RESULT(gw_engine_segment_profile(e, seg_ids[0], &profile, NULL, 0, &reps),
                 GW_ERR_BUFFER_TOO_SMALL);
    CHECK(reps >= 1 && reps != S_SIZE);
    CHECK(profile.id == S_U32 && profile.size == S_SIZE && profile.cohesion == S_F64);
    uint64_t *rep_ids = malloc(reps * sizeof *rep_ids);
    if (rep_ids == NULL) abort();
    fill_u64(rep_ids, reps);
    if (reps >= 2) {
        CHECK_FAILS(gw_engine_segment_profile(e, seg_ids[0], &profile, rep_ids, reps - 1, &len),
                    GW_ERR_BUFFER_TOO_SMALL, "`out_representatives`");
        CHECK(len == reps && all_u64(rep_ids, reps));
        CHECK(profile.id == S_U32 && profile.size == S_SIZE && profile.cohesion == S_F64);
    }
    CHECK_RESULT(gw_engine_segment_profile(e, seg_ids[0], &profile, rep_ids, reps, &len), GW_OK);
    CHECK(len == reps && profile.id == seg_ids[0] && profile.size >= 50);
    uint32_t rep_segment = S_U32;
    CHECK_RESULT(gw_engine_segment_of(e, rep_ids[0], &rep_segment), GW_OK);
    CHECK(rep_segment == seg_ids[0]); /* a representative is a member */
    free(rep_ids);

    /* Decide: the bound is min(slate_size, candidates); a too-small buffer
     * spends no decision and writes no decision id. */
    uint64_t cands[10];
    candidates(cands, 10);
    gw_slate_request r = request(cands, 10, 4);
    uint64_t decision = S_U64;
    struct gw_engine_stats before = stats_of(e);
    fill_u64(ids, 16);
    fill_f64(scores, 16);
    len = S_SIZE;
    CHECK_FAILS(gw_engine_decide(e, &r, ids, scores, 3, &len, &decision), GW_ERR_BUFFER_TOO_SMALL,
                "`out_items`");
    CHECK(len == 4 && decision == S_U64 && all_u64(ids, 16) && all_f64(scores, 16));
    len = S_SIZE;
    CHECK_RESULT(gw_engine_decide(e, &r, NULL, NULL, 0, &len, &decision), GW_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 4 && decision == S_U64);
    r.slate_size = 50; /* more slots than candidates: the bound is 10 */
    CHECK_RESULT(gw_engine_decide(e, &r, ids, scores, 9, &len, &decision),
                 GW_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 10 && decision == S_U64);
    CHECK(stats_of(e).decisions == before.decisions);
    r.slate_size = 4;
    CHECK_RESULT(gw_engine_decide(e, &r, ids, scores, 4, &len, &decision), GW_OK);
    CHECK(len == 4 && decision != S_U64 && all_u64(ids + 4, 12));
    CHECK(stats_of(e).decisions == before.decisions + 1);

    /* The last-error message, too small: truncated and NUL-terminated. */
    CHECK_RESULT(gw_engine_neighbors(e, UNKNOWN_USER, 3, ids, sims, 16, &len),
                 GW_ERR_UNKNOWN_USER);
    char small[6];
    memset(small, 'x', sizeof small);
    size_t needed = 0;
    CHECK_RESULT(gw_last_error_message(small, sizeof small, &needed), GW_ERR_BUFFER_TOO_SMALL);
    CHECK(needed > sizeof small && small[5] == '\0' && strncmp(small, "user ", 5) == 0);
    gw_engine_free(e);
}

static void test_dimension_mismatch(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    float v[DIM + 1];
    synthetic_vector(7, N_CLUSTERS, v, DIM);
    v[DIM] = 0.5f;
    int64_t seg = S_I64;
    CHECK_FAILS(gw_engine_upsert_embedding(e, 7, v, DIM - 1, &seg), GW_ERR_DIMENSION_MISMATCH,
                "dimension 7, expected 8");
    CHECK_FAILS(gw_engine_upsert_embedding(e, 7, v, DIM + 1, &seg), GW_ERR_DIMENSION_MISMATCH,
                "dimension 9, expected 8");
    CHECK_FAILS(gw_engine_upsert_embedding(e, 5000, NULL, 0, &seg), GW_ERR_DIMENSION_MISMATCH,
                "dimension 0");
    CHECK(seg == S_I64);
    uint64_t ids[4];
    float sims[4];
    size_t len = S_SIZE;
    fill_u64(ids, 4);
    fill_f32(sims, 4);
    CHECK_FAILS(gw_engine_search(e, v, 3, 4, ids, sims, 4, &len), GW_ERR_DIMENSION_MISMATCH,
                "dimension 3, expected 8");
    CHECK(len == S_SIZE && all_u64(ids, 4) && all_f32(sims, 4));

    /* Host scores must be one per candidate. */
    uint64_t cands[10];
    candidates(cands, 10);
    float host[10] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f, 1.0f};
    gw_slate_request r = request(cands, 10, 3);
    r.host_scores = host;
    r.n_host_scores = 9;
    uint64_t items[4];
    double scores[4];
    uint64_t decision = S_U64;
    CHECK_FAILS(gw_engine_decide(e, &r, items, scores, 4, &len, &decision),
                GW_ERR_DIMENSION_MISMATCH, "host_scores");
    CHECK(decision == S_U64);

    /* The user 7 in the index is unchanged, and no upsert was counted. */
    struct gw_engine_stats s = stats_of(e);
    CHECK(s.users == N_USERS && s.upserts == N_USERS && s.decisions == 0);
    CHECK_RESULT(gw_engine_search(e, v, DIM, 1, ids, sims, 4, &len), GW_OK);
    CHECK(len == 1 && ids[0] == 7 && sims[0] > 0.999f);

    /* An engine of dimension 0. */
    gw_engine *zero = (gw_engine *)&len;
    CHECK_FAILS(gw_engine_new(0, &zero), GW_ERR_INVALID_ARGUMENT, "`dim`");
    CHECK(zero == (gw_engine *)&len);
    gw_engine_free(e);
}

static void test_non_finite_and_unusable_values(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    float v[DIM];
    synthetic_vector(9, N_CLUSTERS, v, DIM);
    int64_t seg = S_I64;
    float bad[DIM];
    memcpy(bad, v, sizeof bad);
    bad[3] = NAN;
    CHECK_FAILS(gw_engine_upsert_embedding(e, 9, bad, DIM, &seg), GW_ERR_NON_FINITE,
                "position 3");
    bad[3] = v[3];
    bad[5] = INFINITY;
    CHECK_FAILS(gw_engine_upsert_embedding(e, 9, bad, DIM, &seg), GW_ERR_NON_FINITE,
                "position 5");
    bad[5] = -INFINITY;
    CHECK_FAILS(gw_engine_upsert_embedding(e, 9999, bad, DIM, &seg), GW_ERR_NON_FINITE,
                "position 5");
    uint64_t ids[4];
    float sims[4];
    size_t len = S_SIZE;
    CHECK_FAILS(gw_engine_search(e, bad, DIM, 4, ids, sims, 4, &len), GW_ERR_NON_FINITE,
                "non-finite");
    CHECK(len == S_SIZE);
    float zero[DIM] = {0};
    CHECK_FAILS(gw_engine_upsert_embedding(e, 9, zero, DIM, &seg), GW_ERR_INVALID_ARGUMENT,
                "zero vector");
    CHECK(seg == S_I64);
    struct gw_engine_stats s = stats_of(e);
    CHECK(s.users == N_USERS && s.upserts == N_USERS);
    /* User 9 kept its vector. */
    CHECK_RESULT(gw_engine_search(e, v, DIM, 1, ids, sims, 4, &len), GW_OK);
    CHECK(len == 1 && ids[0] == 9 && sims[0] > 0.999f);

    /* Host scores must be finite (NaN is GW_ERR_NON_FINITE); with the
     * default learned blend they may be on any scale. The clock must be
     * finite. */
    uint64_t cands[4] = {1, 2, 3, 4};
    float host[4] = {0.5f, NAN, 0.5f, 0.5f};
    gw_slate_request r = request(cands, 4, 2);
    r.host_scores = host;
    r.n_host_scores = 4;
    uint64_t items[4];
    double scores[4];
    uint64_t decision = S_U64;
    CHECK_FAILS(gw_engine_decide(e, &r, items, scores, 4, &len, &decision), GW_ERR_NON_FINITE,
                "position 1");
    uint64_t scaled = S_U64;
    host[1] = 1.5f;
    CHECK_RESULT(gw_engine_decide(e, &r, items, scores, 4, &len, &scaled), GW_OK);
    CHECK(len == 2 && scaled != S_U64);
    host[1] = -0.01f;
    CHECK_RESULT(gw_engine_decide(e, &r, items, scores, 4, &len, &scaled), GW_OK);
    CHECK(len == 2);
    host[1] = 0.5f;
    r.has_now = true;
    r.now = INFINITY;
    CHECK_FAILS(gw_engine_decide(e, &r, items, scores, 4, &len, &decision),
                GW_ERR_INVALID_ARGUMENT, "`now`");
    CHECK(decision == S_U64);
    r.now = 1000.0;
    CHECK_RESULT(gw_engine_decide(e, &r, items, scores, 4, &len, &decision), GW_OK);
    double nan_now = NAN;
    CHECK_FAILS(gw_engine_feedback(e, decision, NULL, 0, GW_ALL_VISIBLE, &nan_now),
                GW_ERR_INVALID_ARGUMENT, "`now`");
    double now = 1001.0;
    CHECK_RESULT(gw_engine_feedback(e, decision, NULL, 0, GW_ALL_VISIBLE, &now), GW_OK);
    s = stats_of(e);
    /* The two decisions with scores on another scale, and this one. */
    CHECK(s.decisions == 3 && s.feedback_applied == 1);
    gw_engine_free(e);
}

static void test_unknown_ids(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    uint64_t ids[8];
    float sims[8];
    double scores[8];
    size_t len = S_SIZE;
    fill_u64(ids, 8);
    fill_f32(sims, 8);
    uint32_t seg = S_U32;

    /* Unknown user. */
    CHECK_FAILS(gw_engine_neighbors(e, UNKNOWN_USER, 4, ids, sims, 8, &len), GW_ERR_UNKNOWN_USER,
                "user 987654321");
    CHECK(len == S_SIZE && all_u64(ids, 8) && all_f32(sims, 8));
    CHECK_FAILS(gw_engine_segment_of(e, UNKNOWN_USER, &seg), GW_ERR_UNKNOWN_USER,
                "user 987654321");
    bool deleted = true;
    CHECK_RESULT(gw_engine_delete_user(e, UNKNOWN_USER, &deleted), GW_OK); /* not an error */
    CHECK(deleted == false);

    /* No segments yet. */
    CHECK_FAILS(gw_engine_segment_of(e, 1, &seg), GW_ERR_NO_SEGMENTS, "build_segments");
    gw_segment_profile profile = {S_U32, S_SIZE, S_F64};
    CHECK_FAILS(gw_engine_segment_profile(e, 0, &profile, NULL, 0, &len), GW_ERR_NO_SEGMENTS,
                "no segments");
    CHECK_RESULT(gw_engine_segment_ids(e, NULL, 0, &len), GW_OK); /* none: an empty list */
    CHECK(len == 0);
    len = S_SIZE;

    /* Unknown segment. */
    CHECK_RESULT(gw_engine_build_segments(e, NULL), GW_OK);
    CHECK_FAILS(gw_engine_segment_profile(e, 4242, &profile, ids, 8, &len),
                GW_ERR_UNKNOWN_SEGMENT, "segment 4242");
    CHECK(seg == S_U32 && len == S_SIZE && all_u64(ids, 8));
    CHECK(profile.id == S_U32 && profile.size == S_SIZE && profile.cohesion == S_F64);

    /* Unknown encoder (this engine has none). */
    float v[DIM];
    synthetic_vector(1, N_CLUSTERS, v, DIM);
    uint64_t items[3] = {1, 2, 3};
    int64_t seg64 = S_I64;
    CHECK_FAILS(gw_engine_upsert_sequence(e, "seq", 1, items, 3, &seg64), GW_ERR_UNKNOWN_ENCODER,
                "\"seq\"");
    CHECK_FAILS(gw_engine_upsert_features(e, "no-such-encoder", 1, v, DIM, &seg64),
                GW_ERR_UNKNOWN_ENCODER, "\"no-such-encoder\"");
    CHECK(seg64 == S_I64);

    /* Unknown decisions: never made, and far in the future. */
    CHECK_FAILS(gw_engine_feedback(e, 123456789, NULL, 0, GW_ALL_VISIBLE, NULL),
                GW_ERR_UNKNOWN_DECISION, "decision 123456789");
    CHECK_FAILS(gw_engine_feedback(e, UINT64_MAX, NULL, 0, GW_ALL_VISIBLE, NULL),
                GW_ERR_UNKNOWN_DECISION, "decision 18446744073709551615");

    /* Seeds: none known, or fewer than the minimum (100 by default). */
    uint64_t unknown_seeds[120];
    for (size_t i = 0; i < 120; i++) unknown_seeds[i] = UNKNOWN_USER + i;
    fill_u64(ids, 8);
    fill_f64(scores, 8);
    CHECK_FAILS(gw_engine_lookalike(e, unknown_seeds, 120, NULL, 0, GW_SIZE_COUNT, 8,
                                    GW_SCORER_CLASSIFIER, ids, scores, 8, &len),
                GW_ERR_TOO_FEW_SEEDS, "120 seed ids are not in the index");
    uint64_t few[50];
    for (size_t i = 0; i < 50; i++) few[i] = i + 1;
    CHECK_FAILS(gw_engine_lookalike(e, few, 50, NULL, 0, GW_SIZE_COUNT, 8, GW_SCORER_CLASSIFIER,
                                    ids, scores, 8, &len),
                GW_ERR_TOO_FEW_SEEDS, "only 50 usable seeds");
    CHECK(len == S_SIZE && all_u64(ids, 8) && all_f64(scores, 8));

    /* Nobody left: every user is a seed or excluded. */
    uint64_t all[N_USERS];
    for (size_t i = 0; i < N_USERS; i++) all[i] = i + 1;
    CHECK_FAILS(gw_engine_lookalike(e, all, 150, all + 150, N_USERS - 150, GW_SIZE_COUNT, 8,
                                    GW_SCORER_CENTROID, ids, scores, 8, &len),
                GW_ERR_EMPTY_POPULATION, "no candidate users");

    struct gw_engine_stats s = stats_of(e);
    CHECK(s.rejected_unknown_decision == 2 && s.feedback_applied == 0);
    CHECK(s.lookalikes == 0 && s.users == N_USERS && s.upserts == N_USERS);
    gw_engine_free(e);

    /* Too few users for one segment of the privacy floor (50). */
    gw_engine *tiny = synthetic_engine(20);
    size_t n_segments = S_SIZE;
    CHECK_FAILS(gw_engine_build_segments(tiny, &n_segments), GW_ERR_BELOW_PRIVACY_FLOOR,
                "20 users");
    CHECK(n_segments == S_SIZE);
    gw_engine_free(tiny);
}

static void test_invalid_values(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    uint64_t seeds[150];
    for (size_t i = 0; i < 150; i++) seeds[i] = i + 1;
    uint64_t ids[8];
    double scores[8];
    size_t len = S_SIZE;
    fill_u64(ids, 8);
    fill_f64(scores, 8);

    CHECK_FAILS(gw_engine_lookalike(e, seeds, 150, NULL, 0, GW_SIZE_COUNT, 8, 99, ids, scores, 8,
                                    &len),
                GW_ERR_INVALID_ARGUMENT, "`scorer`");
    CHECK_FAILS(gw_engine_lookalike(e, seeds, 150, NULL, 0, 77, 8, GW_SCORER_KNN, ids, scores, 8,
                                    &len),
                GW_ERR_INVALID_ARGUMENT, "`size_kind`");
    CHECK_FAILS(gw_engine_lookalike(e, seeds, 150, NULL, 0, GW_SIZE_COUNT, 2.5, GW_SCORER_KNN,
                                    ids, scores, 8, &len),
                GW_ERR_INVALID_ARGUMENT, "`size_value`");
    CHECK_FAILS(gw_engine_lookalike(e, seeds, 150, NULL, 0, GW_SIZE_COUNT, -3, GW_SCORER_KNN, ids,
                                    scores, 8, &len),
                GW_ERR_INVALID_ARGUMENT, "`size_value`");
    CHECK_FAILS(gw_engine_lookalike(e, seeds, 150, NULL, 0, GW_SIZE_COUNT, NAN, GW_SCORER_KNN,
                                    ids, scores, 8, &len),
                GW_ERR_INVALID_ARGUMENT, "`size_value`");
    const double bad_fractions[] = {0.0, -0.5, 1.5, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_fractions / sizeof bad_fractions[0]; i++) {
        CHECK_FAILS(gw_engine_lookalike(e, seeds, 150, NULL, 0, GW_SIZE_FRACTION,
                                        bad_fractions[i], GW_SCORER_KNN, ids, scores, 8, &len),
                    GW_ERR_INVALID_ARGUMENT, "fraction");
    }
    CHECK(len == S_SIZE && all_u64(ids, 8) && all_f64(scores, 8));
    CHECK(stats_of(e).lookalikes == 0);

    /* Policy and slate size. */
    uint64_t cands[10];
    candidates(cands, 10);
    gw_slate_request r = request(cands, 10, 3);
    r.policy = 17;
    uint64_t decision = S_U64;
    CHECK_FAILS(gw_engine_decide(e, &r, ids, scores, 8, &len, &decision), GW_ERR_INVALID_ARGUMENT,
                "`policy`");
    r.policy = GW_POLICY_GREEDY;
    r.slate_size = 0;
    CHECK_FAILS(gw_engine_decide(e, &r, ids, scores, 8, &len, &decision), GW_ERR_INVALID_ARGUMENT,
                "`slate_size`");
    CHECK(decision == S_U64 && all_u64(ids, 8) && stats_of(e).decisions == 0);

    /* A slot outside the slate: refused, counted, and the decision is still
     * open (so the host can retry with the right slots). */
    uint64_t d = decide_one(e, 5, 3);
    size_t bad_slot[2] = {0, 3};
    CHECK_FAILS(gw_engine_feedback(e, d, bad_slot, 2, GW_ALL_VISIBLE, NULL),
                GW_ERR_INVALID_ARGUMENT, "slot 3");
    struct gw_engine_stats s = stats_of(e);
    CHECK(s.rejected_bad_position == 1 && s.feedback_applied == 0 && s.clicks == 0);
    size_t good_slot[1] = {2};
    CHECK_RESULT(gw_engine_feedback(e, d, good_slot, 1, GW_ALL_VISIBLE, NULL), GW_OK);
    s = stats_of(e);
    CHECK(s.feedback_applied == 1 && s.clicks == 1 && s.impressions == 3);

    /* An encoder needs a non-empty name (checked before the model is read). */
    CHECK_FAILS(gw_engine_load_encoder(e, "", "models/ml100k-seq.onnx"), GW_ERR_INVALID_ARGUMENT,
                "`name`");

    /* Invalid configuration values. */
    gw_engine *out = (gw_engine *)&len;
    const char *graph_k = "{\"dim\": 8, \"graph_k\": 0}";
    CHECK_FAILS(gw_engine_open_json(graph_k, strlen(graph_k), &out), GW_ERR_INVALID_ARGUMENT,
                "graph_k");
    const char *prior = "{\"dim\": 8, \"bandit\": {\"prior_beta\": -1.0}}";
    CHECK_FAILS(gw_engine_open_json(prior, strlen(prior), &out), GW_ERR_INVALID_ARGUMENT,
                "prior");
    CHECK(out == (gw_engine *)&len);
    gw_engine_free(e);
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f == NULL) return;
    CHECK(fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

/* Reads a whole file into a malloc'd buffer. */
static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (f == NULL) abort();
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long size = ftell(f);
    CHECK(size > 0);
    CHECK(fseek(f, 0, SEEK_SET) == 0);
    unsigned char *buf = malloc((size_t)size);
    if (buf == NULL) abort();
    CHECK(fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void test_utf8_and_config_errors(void) {
    gw_engine *out = (gw_engine *)&tmpdir; /* sentinel: must stay */

    /* JSON: invalid UTF-8, not JSON, unknown field, no dim, wrong type. */
    const char bad_utf8[] = "{\"dim\": 8, \"x\": \"\xff\xfe\"}";
    CHECK_FAILS(gw_engine_open_json(bad_utf8, sizeof bad_utf8 - 1, &out), GW_ERR_INVALID_UTF8,
                "`json`");
    char *msg = last_error();
    CHECK(strstr(msg, "offset 17") != NULL); /* where the first bad byte is */
    free(msg);
    const char *not_json = "{\"dim\": 8";
    CHECK_FAILS(gw_engine_open_json(not_json, strlen(not_json), &out), GW_ERR_INVALID_ARGUMENT,
                "not a valid engine config");
    const char *unknown_field = "{\"dim\": 8, \"colour\": \"blue\"}";
    CHECK_FAILS(gw_engine_open_json(unknown_field, strlen(unknown_field), &out),
                GW_ERR_INVALID_ARGUMENT, "colour");
    const char *no_dim = "{\"segments\": {\"min_size\": 30}}";
    CHECK_FAILS(gw_engine_open_json(no_dim, strlen(no_dim), &out), GW_ERR_INVALID_ARGUMENT,
                "dim");
    const char *wrong_type = "{\"dim\": \"eight\"}";
    /* (serde's message names the type, not the field.) */
    CHECK_FAILS(gw_engine_open_json(wrong_type, strlen(wrong_type), &out),
                GW_ERR_INVALID_ARGUMENT, "expected usize");
    CHECK_FAILS(gw_engine_open_json(NULL, 0, &out), GW_ERR_INVALID_ARGUMENT, "config");
    CHECK(out == (gw_engine *)&tmpdir);

    /* The length is respected: no NUL needed, trailing bytes ignored. */
    const char *padded = "{\"dim\": 8}trailing garbage";
    gw_engine *e = NULL;
    CHECK_RESULT(gw_engine_open_json(padded, 10, &e), GW_OK);
    CHECK(e != NULL);

    /* An encoder the config names that does not exist: nothing is opened. */
    const char *missing_model =
        "{\"dim\": 8, \"encoders\": [{\"name\": \"seq\", \"path\": \"/nonexistent/m.onnx\"}]}";
    gw_result rc = gw_engine_open_json(missing_model, strlen(missing_model), &out);
    CHECK(rc != GW_OK);
    msg = last_error();
    CHECK(strstr(msg, "/nonexistent/m.onnx") != NULL || rc == GW_ERR_ONNX_UNAVAILABLE);
    free(msg);
    CHECK(out == (gw_engine *)&tmpdir);

    /* Config files: missing, malformed. */
    char path[128];
    tmp_path(path, sizeof path, "missing.json");
    CHECK_FAILS(gw_engine_open_file(path, &out), GW_ERR_IO, "missing.json");
    tmp_path(path, sizeof path, "bad.json");
    write_file(path, "{\"dim\": 8,,}", 12);
    CHECK_FAILS(gw_engine_open_file(path, &out), GW_ERR_PARSE, "bad.json");
    CHECK(remove(path) == 0);
    CHECK(out == (gw_engine *)&tmpdir);

    /* Strings that must be UTF-8: names and paths. */
    const char bad_name[] = "se\xc3q";
    CHECK_FAILS(gw_engine_load_encoder(e, bad_name, "m.onnx"), GW_ERR_INVALID_UTF8, "`name`");
    uint64_t items[2] = {1, 2};
    CHECK_FAILS(gw_engine_upsert_sequence(e, bad_name, 1, items, 2, NULL), GW_ERR_INVALID_UTF8,
                "`encoder`");
    const char bad_path[] = "/tmp/snap\xff.gw";
    CHECK_FAILS(gw_engine_save(e, bad_path), GW_ERR_INVALID_UTF8, "`snapshot_path`");
    CHECK_FAILS(gw_engine_load(bad_path, false, &out), GW_ERR_INVALID_UTF8, "`snapshot_path`");
    gw_snapshot_info info;
    CHECK_FAILS(gw_snapshot_inspect(bad_path, &info), GW_ERR_INVALID_UTF8, "`snapshot_path`");
    CHECK_FAILS(gw_runtime_init(bad_path), GW_ERR_INVALID_UTF8, "`library_path`");
    CHECK(out == (gw_engine *)&tmpdir);
    gw_engine_free(e);
}

/* Loads `path` expecting `code` from both gw_engine_load and
 * gw_snapshot_inspect, with `needle` in both messages. */
static void expect_bad_snapshot(const char *path, gw_result code, const char *needle) {
    gw_engine *out = (gw_engine *)&tmpdir;
    gw_snapshot_info info;
    memset(&info, 0xA5, sizeof info);
    gw_snapshot_info info_before = info;
    CHECK_FAILS(gw_engine_load(path, false, &out), code, needle);
    CHECK_FAILS(gw_engine_load(path, true, &out), code, needle);
    CHECK_FAILS(gw_snapshot_inspect(path, &info), code, needle);
    CHECK(out == (gw_engine *)&tmpdir);
    CHECK(memcmp(&info, &info_before, sizeof info) == 0);
}

static void test_corrupt_snapshots(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    CHECK_RESULT(gw_engine_build_segments(e, NULL), GW_OK);
    uint64_t d = decide_one(e, 3, 3);
    (void)decide_one(e, 4, 3); /* left pending */
    size_t click[1] = {1};
    CHECK_RESULT(gw_engine_feedback(e, d, click, 1, GW_ALL_VISIBLE, NULL), GW_OK);

    char good[128], bad[128];
    tmp_path(good, sizeof good, "good.gw");
    tmp_path(bad, sizeof bad, "bad.gw");
    CHECK_RESULT(gw_engine_save(e, good), GW_OK);
    gw_snapshot_info info;
    CHECK_RESULT(gw_snapshot_inspect(good, &info), GW_OK);
    CHECK(info.version >= 1 && info.dim == DIM && info.users == N_USERS);
    CHECK(info.segments >= 1 && info.pending_decisions == 1 && info.feedback_applied == 1);
    size_t size = 0;
    unsigned char *bytes = read_file(good, &size);
    CHECK(info.bytes == size);

    /* The good file loads, and answers like the original. */
    gw_engine *loaded = NULL;
    CHECK_RESULT(gw_engine_load(good, true, &loaded), GW_OK);
    CHECK(loaded != NULL);
    uint32_t s1 = S_U32, s2 = 0;
    CHECK_RESULT(gw_engine_segment_of(e, 17, &s1), GW_OK);
    CHECK_RESULT(gw_engine_segment_of(loaded, 17, &s2), GW_OK);
    CHECK(s1 == s2);
    gw_engine_free(loaded);

    /* One byte flipped in the middle of the payload: the checksum fails. */
    bytes[size / 2] ^= 0x40;
    write_file(bad, bytes, size);
    expect_bad_snapshot(bad, GW_ERR_CORRUPT_SNAPSHOT, "checksum mismatch");
    bytes[size / 2] ^= 0x40;

    /* A flipped bit in the header's version field is corruption too (the
     * checksum covers it), not an "unknown version". */
    bytes[8] ^= 0x01;
    write_file(bad, bytes, size);
    expect_bad_snapshot(bad, GW_ERR_CORRUPT_SNAPSHOT, "checksum mismatch");
    bytes[8] ^= 0x01;

    /* The magic bytes damaged. */
    bytes[0] ^= 0xFF;
    write_file(bad, bytes, size);
    expect_bad_snapshot(bad, GW_ERR_CORRUPT_SNAPSHOT, "magic");
    bytes[0] ^= 0xFF;

    /* Truncated: half the file, a partial header, nothing at all; and a
     * byte appended. */
    write_file(bad, bytes, size / 2);
    expect_bad_snapshot(bad, GW_ERR_CORRUPT_SNAPSHOT, "truncated");
    write_file(bad, bytes, size - 1);
    expect_bad_snapshot(bad, GW_ERR_CORRUPT_SNAPSHOT, "truncated");
    write_file(bad, bytes, 10);
    expect_bad_snapshot(bad, GW_ERR_CORRUPT_SNAPSHOT, "shorter than");
    write_file(bad, bytes, 0);
    expect_bad_snapshot(bad, GW_ERR_CORRUPT_SNAPSHOT, "0 bytes");
    unsigned char *longer = malloc(size + 1);
    if (longer == NULL) abort();
    memcpy(longer, bytes, size);
    longer[size] = 0;
    write_file(bad, longer, size + 1);
    expect_bad_snapshot(bad, GW_ERR_CORRUPT_SNAPSHOT, "extended");
    free(longer);

    /* Garbage, and a text file. */
    unsigned char garbage[4096];
    uint64_t state = 12345;
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (unsigned char)rng_next(&state);
    write_file(bad, garbage, sizeof garbage);
    expect_bad_snapshot(bad, GW_ERR_CORRUPT_SNAPSHOT, "not a valid groupwise snapshot");
    const char *text = "{\"dim\": 8}\n this is not a snapshot, it is a config file\n";
    write_file(bad, text, strlen(text));
    expect_bad_snapshot(bad, GW_ERR_CORRUPT_SNAPSHOT, "magic");
    CHECK(remove(bad) == 0);

    /* Missing file, a folder: I/O errors naming the path. */
    expect_bad_snapshot(bad, GW_ERR_IO, "bad.gw");
    expect_bad_snapshot(tmpdir, GW_ERR_IO, tmpdir);
    char nowhere[160];
    snprintf(nowhere, sizeof nowhere, "%s/no/such/folder/x.gw", tmpdir);
    CHECK_FAILS(gw_engine_save(e, nowhere), GW_ERR_IO, "no/such/folder");

    /* Failed saves and loads left the good snapshot alone. */
    CHECK_RESULT(gw_snapshot_inspect(good, &info), GW_OK);
    CHECK(info.bytes == size);
    CHECK(stats_of(e).snapshots == 1);
    free(bytes);
    CHECK(remove(good) == 0);
    gw_engine_free(e);
}

static void test_repeated_feedback(void) {
    gw_engine *e = synthetic_engine(N_USERS);
    uint64_t d = decide_one(e, 10, 4);
    size_t clicks[2] = {0, 2};
    CHECK_RESULT(gw_engine_feedback(e, d, clicks, 2, 3, NULL), GW_OK);
    char expected[64];
    snprintf(expected, sizeof expected, "decision %llu", (unsigned long long)d);
    CHECK_FAILS(gw_engine_feedback(e, d, clicks, 2, 3, NULL), GW_ERR_UNKNOWN_DECISION, expected);
    CHECK_FAILS(gw_engine_feedback(e, d, NULL, 0, GW_ALL_VISIBLE, NULL), GW_ERR_UNKNOWN_DECISION,
                expected);
    struct gw_engine_stats s = stats_of(e);
    CHECK(s.decisions == 1 && s.feedback_applied == 1 && s.rejected_unknown_decision == 2);
    CHECK(s.clicks == 2 && s.impressions == 3);
    gw_engine_free(e);
}

/* Opens an engine of dimension DIM that keeps a delta journal. */
static gw_engine *replica(unsigned id) {
    char json[64];
    int n = snprintf(json, sizeof json, "{\"dim\": 8, \"replica_id\": %u}", id);
    gw_engine *e = NULL;
    CHECK_RESULT(gw_engine_open_json(json, (size_t)n, &e), GW_OK);
    if (e == NULL) abort();
    return e;
}

static void test_replica_deltas(void) {
    /* Without a replica id there is no journal to export. */
    gw_engine *plain = synthetic_engine(10);
    gw_bytes *none = (gw_bytes *)&tmpdir;
    CHECK_FAILS(gw_engine_export_delta(plain, &none), GW_ERR_INVALID_ARGUMENT, "replica_id");
    CHECK(none == (gw_bytes *)&tmpdir);
    gw_engine_free(plain);

    gw_engine *a = replica(1);
    gw_engine *b = replica(2);
    for (int i = 0; i < 5; i++) {
        uint64_t d = decide_one(a, 0, 3);
        size_t click[1] = {(size_t)i % 3};
        CHECK_RESULT(gw_engine_feedback(a, d, click, 1, GW_ALL_VISIBLE, NULL), GW_OK);
    }
    gw_bytes *delta = NULL;
    CHECK_RESULT(gw_engine_export_delta(a, &delta), GW_OK);
    CHECK(delta != NULL);
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_RESULT(gw_bytes_data(delta, &data, &len), GW_OK);
    CHECK(data != NULL && len > 32);
    unsigned char *copy = malloc(len);
    if (copy == NULL) abort();
    memcpy(copy, data, len);

    /* Damaged deltas: nothing merged, out_merged untouched. */
    bool merged = true;
    copy[len / 2] ^= 0x10;
    CHECK_FAILS(gw_engine_merge_delta(b, copy, len, &merged), GW_ERR_CORRUPT_SNAPSHOT,
                "checksum mismatch");
    copy[len / 2] ^= 0x10;
    CHECK_FAILS(gw_engine_merge_delta(b, copy, len - 1, &merged), GW_ERR_CORRUPT_SNAPSHOT,
                "truncated");
    CHECK_FAILS(gw_engine_merge_delta(b, copy, 16, &merged), GW_ERR_CORRUPT_SNAPSHOT,
                "shorter than");
    CHECK_FAILS(gw_engine_merge_delta(b, NULL, 0, &merged), GW_ERR_CORRUPT_SNAPSHOT,
                "0 bytes");
    unsigned char garbage[256];
    uint64_t state = 99;
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (unsigned char)rng_next(&state);
    CHECK_FAILS(gw_engine_merge_delta(b, garbage, sizeof garbage, &merged),
                GW_ERR_CORRUPT_SNAPSHOT, "<delta>");
    CHECK(merged == true);
    CHECK(stats_of(b).merged_deltas == 0);

    /* A snapshot is not a delta (another magic). */
    char path[128];
    tmp_path(path, sizeof path, "replica.gw");
    CHECK_RESULT(gw_engine_save(a, path), GW_OK);
    size_t snap_len = 0;
    unsigned char *snap = read_file(path, &snap_len);
    CHECK_FAILS(gw_engine_merge_delta(b, snap, snap_len, &merged), GW_ERR_CORRUPT_SNAPSHOT,
                "magic");
    free(snap);
    CHECK(remove(path) == 0);

    /* The intact delta merges once; a duplicate and the replica's own delta
     * are not errors but report false. */
    merged = false;
    CHECK_RESULT(gw_engine_merge_delta(b, copy, len, &merged), GW_OK);
    CHECK(merged == true);
    CHECK_RESULT(gw_engine_merge_delta(b, copy, len, &merged), GW_OK);
    CHECK(merged == false);
    merged = true;
    CHECK_RESULT(gw_engine_merge_delta(a, copy, len, &merged), GW_OK);
    CHECK(merged == false);
    CHECK_RESULT(gw_engine_merge_delta(b, copy, len, NULL), GW_OK); /* out_merged optional */
    CHECK(stats_of(b).merged_deltas == 1);

    free(copy);
    gw_bytes_free(delta);
    gw_engine_free(a);
    gw_engine_free(b);
}

/* ------------------------------------------------------------------------ */

static void test_special_files(void) {
    gw_engine *e = synthetic_engine(20);
    gw_engine *out = (gw_engine *)&tmpdir;
    gw_snapshot_info info;

    /* Devices that never end: refused by what they are (the library used to
     * read them until memory ran out). */
    CHECK_FAILS(gw_engine_load("/dev/zero", false, &out), GW_ERR_IO, "/dev/zero");
    CHECK_FAILS(gw_engine_load("/dev/urandom", false, &out), GW_ERR_IO, "character device");
    CHECK_FAILS(gw_snapshot_inspect("/dev/zero", &info), GW_ERR_IO, "not a regular file");
    CHECK_FAILS(gw_snapshot_inspect("/dev/urandom", &info), GW_ERR_IO, "/dev/urandom");

    /* A FIFO with no writer: refused without blocking; a save does not
     * replace it with a regular file. */
    char fifo[128];
    tmp_path(fifo, sizeof fifo, "pipe.gw");
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK_FAILS(gw_engine_load(fifo, true, &out), GW_ERR_IO, "FIFO");
    CHECK_FAILS(gw_snapshot_inspect(fifo, &info), GW_ERR_IO, "pipe.gw");
    CHECK_FAILS(gw_engine_save(e, fifo), GW_ERR_IO, "FIFO");
    struct stat st;
    CHECK(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    CHECK(remove(fifo) == 0);
    /* A folder. */
    CHECK_FAILS(gw_engine_load(tmpdir, false, &out), GW_ERR_IO, "directory");
    CHECK_FAILS(gw_engine_save(e, tmpdir), GW_ERR_IO, "directory");
    CHECK(out == (gw_engine *)&tmpdir);
    CHECK(stats_of(e).snapshots == 0);

    /* A header that declares more than the file holds, or more than any
     * snapshot may: corrupt, whatever the checksum. */
    char good[128], bad[128];
    tmp_path(good, sizeof good, "special-good.gw");
    tmp_path(bad, sizeof bad, "special-bad.gw");
    CHECK_RESULT(gw_engine_save(e, good), GW_OK);
    size_t size = 0;
    unsigned char *bytes = read_file(good, &size);
    uint64_t declared[2] = {(uint64_t)size, UINT64_MAX};
    for (size_t i = 0; i < 2; i++) {
        for (size_t b = 0; b < 8; b++) bytes[16 + b] = (unsigned char)(declared[i] >> (8 * b));
        write_file(bad, bytes, size);
        CHECK_FAILS(gw_engine_load(bad, false, &out), GW_ERR_CORRUPT_SNAPSHOT, "payload bytes");
        CHECK_FAILS(gw_snapshot_inspect(bad, &info), GW_ERR_CORRUPT_SNAPSHOT, "special-bad.gw");
    }
    free(bytes);
    CHECK(remove(bad) == 0);
    CHECK(remove(good) == 0);
    gw_engine_free(e);
}

/* `json` must be refused with GW_ERR_INVALID_ARGUMENT naming `needle`. If
 * it is accepted (as it used to be), the engine is used the way that used
 * to abort the process: an upsert, a lookalike. */
static void expect_bad_config(const char *json, const char *needle) {
    gw_engine *e = NULL;
    gw_result rc = gw_engine_open_json(json, strlen(json), &e);
    char *msg = last_error();
    if (rc != GW_ERR_INVALID_ARGUMENT || strstr(msg, needle) == NULL) {
        fprintf(stderr, "%s:%d: %s: %s (last error: %s), expected GW_ERR_INVALID_ARGUMENT naming %s\n",
                __FILE__, __LINE__, json, gw_result_name(rc), msg, needle);
        atomic_fetch_add(&check_failures, 1);
    }
    free(msg);
    if (rc == GW_OK && e != NULL) {
        float v[DIM];
        for (uint64_t u = 1; u <= 200; u++) {
            synthetic_vector(u, N_CLUSTERS, v, DIM);
            (void)gw_engine_upsert_embedding(e, u, v, DIM, NULL);
        }
        gw_engine_free(e);
    }
}

static void test_config_ranges(void) {
    gw_engine *out = (gw_engine *)&tmpdir;
    CHECK_FAILS(gw_engine_new(SIZE_MAX, &out), GW_ERR_INVALID_ARGUMENT, "dim");
    CHECK_FAILS(gw_engine_new(1000000000, &out), GW_ERR_INVALID_ARGUMENT, "1000000000");
    CHECK_FAILS(gw_engine_new(0, &out), GW_ERR_INVALID_ARGUMENT, "`dim` must be in 1..=65536");
    CHECK(out == (gw_engine *)&tmpdir);

    expect_bad_config("{\"dim\": 8, \"index\": {\"ef_construction\": 4000000000}}",
                      "`index.ef_construction` must be in 1..=4096, got 4000000000");
    expect_bad_config("{\"dim\": 8, \"index\": {\"ef_search\": 4000000000}}", "index.ef_search");
    expect_bad_config("{\"dim\": 1000000000}", "dim");
    expect_bad_config("{\"dim\": 8, \"graph_k\": 18446744073709551615}", "graph_k");
    expect_bad_config("{\"dim\": 8, \"lookalike\": {\"knn_k\": 18446744073709551615}}",
                      "lookalike.knn_k");
    expect_bad_config("{\"dim\": 8, \"lookalike\": {\"max_negatives\": 18446744073709551615}}",
                      "lookalike.max_negatives");
    expect_bad_config("{\"dim\": 8, \"lookalike\": {\"iterations\": 18446744073709551615}}",
                      "lookalike.iterations");
    expect_bad_config("{\"dim\": 8, \"segments\": {\"min_size\": 0}}", "segments.min_size");
    expect_bad_config("{\"dim\": 8, \"segments\": {\"min_overlap\": -3}}",
                      "segments.min_overlap");
    expect_bad_config("{\"dim\": 8, \"bandit\": {\"max_pending\": 0}}", "bandit.max_pending");
    expect_bad_config("{\"dim\": 8, \"bandit\": {\"click_model\": {\"Pbm\": {\"examination\": []}}}}",
                      "bandit.click_model.Pbm.examination");
    /* Unknown nested fields: a typo is an error, at every level. */
    expect_bad_config("{\"dim\": 8, \"bandit\": {\"foo\": 1}}", "foo");
    expect_bad_config("{\"dim\": 8, \"index\": {\"ef_serach\": 64}}", "ef_serach");
    expect_bad_config("{\"dim\": 8, \"bandit\": {\"blend\": {\"PriorMean\": "
                      "{\"strength\": 5, \"strenght\": 6}}}}",
                      "strenght");

    /* A config at the bounds opens and serves. */
    const char *edge = "{\"dim\": 8, \"index\": {\"ef_construction\": 4096, \"ef_search\": 4096}, "
                       "\"lookalike\": {\"iterations\": 1000, \"min_seeds\": 5}}";
    gw_engine *e = NULL;
    CHECK_RESULT(gw_engine_open_json(edge, strlen(edge), &e), GW_OK);
    if (e == NULL) abort();
    float v[DIM];
    for (uint64_t u = 1; u <= 300; u++) {
        synthetic_vector(u, N_CLUSTERS, v, DIM);
        CHECK_RESULT(gw_engine_upsert_embedding(e, u, v, DIM, NULL), GW_OK);
    }
    /* A k far beyond the population answers with the population (it used
     * to allocate for k and abort). */
    static uint64_t ids[300];
    static float sims[300];
    size_t len = 0;
    CHECK_RESULT(gw_engine_neighbors(e, 1, (size_t)1 << 40, ids, sims, 300, &len), GW_OK);
    CHECK(len == 299);
    CHECK_RESULT(gw_engine_search(e, v, DIM, SIZE_MAX, ids, sims, 300, &len), GW_OK);
    CHECK(len == 300);
    gw_engine_free(e);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gw-test-errors-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_null_engine_everywhere();
    test_null_arguments();
    test_buffer_too_small();
    test_dimension_mismatch();
    test_non_finite_and_unusable_values();
    test_unknown_ids();
    test_invalid_values();
    test_utf8_and_config_errors();
    test_corrupt_snapshots();
    test_repeated_feedback();
    test_replica_deltas();
    test_special_files();
    test_config_ranges();
    if (rmdir(tmpdir) != 0) {
        perror("rmdir");
        CHECK(0);
    }
    return finish("test_errors");
}
