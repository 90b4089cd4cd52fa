/*
 * The error paths that need ONNX Runtime and the reference encoders
 * (models/ml100k-{seq,bag}.onnx; ONNX Runtime from .groupwise/lib, both
 * installed by scripts/setup.sh). Kept small: one runtime load, two models,
 * a handful of encodings, so it stays fast under valgrind.
 *
 *   - gw_runtime_init with a missing library -> GW_ERR_ONNX_UNAVAILABLE
 *     (before anything loads the runtime; the process keeps working)
 *   - models: missing file -> GW_ERR_IO, not ONNX -> GW_ERR_ONNX, output
 *     dimension not the engine's -> GW_ERR_DIMENSION_MISMATCH
 *   - encodings: an empty history, features for a sequence model, a feature
 *     vector of the wrong length, NaN features, unknown encoder names
 *   - snapshots: loaded without encoders (upserts from behaviour need
 *     gw_engine_load_encoder), and with encoders whose model file is gone.
 *
 * Run from the repository root (scripts/c-tests does).
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

#define SEQ_MODEL "models/ml100k-seq.onnx"
#define BAG_MODEL "models/ml100k-bag.onnx"
#define BAG_WIDTH 1684 /* the bag model's feature width (items + reserved) */

static char tmpdir[64];

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    CHECK(in != NULL && out != NULL);
    if (in == NULL || out == NULL) abort();
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        CHECK(fwrite(buf, 1, n, out) == n);
    }
    fclose(in);
    CHECK(fclose(out) == 0);
}

static void test_runtime_init(void) {
    /* Must run first: nothing has loaded ONNX Runtime yet. */
    CHECK_FAILS(gw_runtime_init("/nonexistent/libonnxruntime.so"), GW_ERR_ONNX_UNAVAILABLE,
                "/nonexistent/libonnxruntime.so");
    CHECK_FAILS(gw_runtime_init(NULL), GW_ERR_NULL_ARGUMENT, "`library_path`");
    /* The failure poisoned nothing: the default search still finds it. */
    CHECK_RESULT(gw_runtime_init(".groupwise/lib/libonnxruntime.so"), GW_OK);
    /* Once loaded, the same library again is fine; another one is refused
     * with a message naming the loaded one, which stays in use. */
    CHECK_RESULT(gw_runtime_init(".groupwise/lib/libonnxruntime.so"), GW_OK);
    CHECK_FAILS(gw_runtime_init(BAG_MODEL), GW_ERR_INVALID_ARGUMENT, "already loaded");
}

static void test_models(void) {
    gw_engine *e8 = NULL;
    CHECK_RESULT(gw_engine_new(8, &e8), GW_OK);
    CHECK_FAILS(gw_engine_load_encoder(e8, "seq", SEQ_MODEL), GW_ERR_DIMENSION_MISMATCH,
                "output has dimension 64, expected 8");
    CHECK_FAILS(gw_engine_load_encoder(e8, "seq", "/nonexistent/model.onnx"), GW_ERR_IO,
                "/nonexistent/model.onnx");
    CHECK_FAILS(gw_engine_load_encoder(e8, "seq", "ffi/include/groupwise.h"), GW_ERR_ONNX,
                "ffi/include/groupwise.h");
    struct gw_engine_stats s;
    CHECK_RESULT(gw_engine_get_stats(e8, &s), GW_OK);
    CHECK(s.encoders == 0);
    gw_engine_free(e8);

    /* The same through a config: nothing is opened. */
    const char *wrong_dim = "{\"dim\": 32, \"encoders\": [{\"name\": \"seq\", \"path\": \"" SEQ_MODEL
                            "\"}]}";
    gw_engine *out = (gw_engine *)&tmpdir;
    CHECK_FAILS(gw_engine_open_json(wrong_dim, strlen(wrong_dim), &out), GW_ERR_DIMENSION_MISMATCH,
                "expected 32");
    CHECK(out == (gw_engine *)&tmpdir);
    /* A config file resolves relative encoder paths against its folder: the
     * example config does, from any working directory. */
    gw_engine *e = NULL;
    CHECK_RESULT(gw_engine_open_file("examples/groupwise.json", &e), GW_OK);
    CHECK_RESULT(gw_engine_get_stats(e, &s), GW_OK);
    CHECK(s.encoders == 2);
    gw_engine_free(e);
}

static void test_encodings(void) {
    const char *json = "{\"dim\": 64, \"encoders\": [{\"name\": \"seq\", \"path\": \"" SEQ_MODEL
                       "\"}, {\"name\": \"bag\", \"path\": \"" BAG_MODEL "\"}]}";
    gw_engine *e = NULL;
    CHECK_RESULT(gw_engine_open_json(json, strlen(json), &e), GW_OK);
    if (e == NULL) return;

    uint64_t movies[4] = {50, 172, 181, 222};
    int64_t segment = 123;
    CHECK_RESULT(gw_engine_upsert_sequence(e, "seq", 1, movies, 4, &segment), GW_OK);
    CHECK(segment == GW_NO_SEGMENT);

    /* An empty history has no embedding. */
    segment = 123;
    CHECK_FAILS(gw_engine_upsert_sequence(e, "seq", 2, NULL, 0, &segment),
                GW_ERR_INVALID_ARGUMENT, "no items");
    /* Features for a sequence model; a wrong feature width; NaN features. */
    float *features = calloc(BAG_WIDTH + 1, sizeof *features);
    if (features == NULL) abort();
    CHECK_FAILS(gw_engine_upsert_features(e, "seq", 3, features, 64, &segment),
                GW_ERR_INVALID_ARGUMENT, "item sequences");
    CHECK_FAILS(gw_engine_upsert_features(e, "bag", 3, features, BAG_WIDTH - 2, &segment),
                GW_ERR_DIMENSION_MISMATCH, "1684");
    CHECK_FAILS(gw_engine_upsert_features(e, "bag", 3, features, BAG_WIDTH + 1, &segment),
                GW_ERR_DIMENSION_MISMATCH, "1685 values");
    features[52] = 1.0f;
    features[174] = NAN;
    CHECK_FAILS(gw_engine_upsert_features(e, "bag", 3, features, BAG_WIDTH, &segment),
                GW_ERR_NON_FINITE, "position 174");
    features[174] = 1.0f;
    CHECK_RESULT(gw_engine_upsert_features(e, "bag", 3, features, BAG_WIDTH, &segment), GW_OK);
    free(features);
    /* Unknown encoders. */
    CHECK_FAILS(gw_engine_upsert_sequence(e, "Seq", 4, movies, 4, &segment),
                GW_ERR_UNKNOWN_ENCODER, "\"Seq\"");
    CHECK(segment == GW_NO_SEGMENT);

    struct gw_engine_stats s;
    CHECK_RESULT(gw_engine_get_stats(e, &s), GW_OK);
    CHECK(s.users == 2 && s.upserts == 2 && s.encoders == 2);
    gw_engine_free(e);
}

static void test_snapshot_encoders(void) {
    /* An engine whose encoder file is a copy we can take away. */
    char model[128], snapshot[128];
    snprintf(model, sizeof model, "%s/seq.onnx", tmpdir);
    snprintf(snapshot, sizeof snapshot, "%s/engine.gw", tmpdir);
    copy_file(SEQ_MODEL, model);
    char json[512];
    int n = snprintf(json, sizeof json,
                     "{\"dim\": 64, \"encoders\": [{\"name\": \"seq\", \"path\": \"%s\"}]}",
                     model);
    gw_engine *e = NULL;
    CHECK_RESULT(gw_engine_open_json(json, (size_t)n, &e), GW_OK);
    if (e == NULL) return;
    uint64_t movies[3] = {1, 2, 3};
    for (uint64_t u = 1; u <= 5; u++) {
        movies[0] = u;
        CHECK_RESULT(gw_engine_upsert_sequence(e, "seq", u, movies, 3, NULL), GW_OK);
    }
    CHECK_RESULT(gw_engine_save(e, snapshot), GW_OK);
    gw_engine_free(e);

    /* Loaded without encoders: serves, but cannot encode until one is loaded. */
    gw_engine *bare = NULL;
    CHECK_RESULT(gw_engine_load(snapshot, false, &bare), GW_OK);
    CHECK_FAILS(gw_engine_upsert_sequence(bare, "seq", 6, movies, 3, NULL),
                GW_ERR_UNKNOWN_ENCODER, "\"seq\"");
    CHECK_RESULT(gw_engine_load_encoder(bare, "seq", SEQ_MODEL), GW_OK);
    CHECK_RESULT(gw_engine_upsert_sequence(bare, "seq", 6, movies, 3, NULL), GW_OK);
    gw_engine_free(bare);

    /* The model named by the snapshot is gone: loading with encoders fails
     * with the path, without encoders it still works. */
    CHECK(remove(model) == 0);
    gw_engine *out = (gw_engine *)&tmpdir;
    CHECK_FAILS(gw_engine_load(snapshot, true, &out), GW_ERR_IO, model);
    CHECK(out == (gw_engine *)&tmpdir);
    CHECK_RESULT(gw_engine_load(snapshot, false, &bare), GW_OK);
    gw_engine_free(bare);
    CHECK(remove(snapshot) == 0);
}

int main(void) {
    if (access(SEQ_MODEL, R_OK) != 0 || access(".groupwise/lib/libonnxruntime.so", R_OK) != 0) {
        fprintf(stderr, "test_encoder: run from the repository root after scripts/setup.sh\n");
        return 1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gw-test-encoder-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_runtime_init();
    test_models();
    test_encodings();
    test_snapshot_encoders();
    CHECK(rmdir(tmpdir) == 0);
    return finish("test_encoder");
}
