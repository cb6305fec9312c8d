/*
 * uuid5 ids of a column of names (transform/identity_keys.py).
 *
 * uuid5(namespace, name) is the first 16 bytes of SHA-1(namespace || name) with the
 * version and variant bits set. hashlib costs about 400 ns a call here, most of it
 * creating an OpenSSL context per name, all of it holding the GIL, and formatting the
 * text in numpy another 100 ns; a backfill derives three ids per license. This module
 * takes a whole Arrow binary column (its data buffer and offsets) and returns the ids'
 * text, in one call with the GIL released.
 *
 * SHA-1 as FIPS 180-4 section 6.1 specifies it, written for this one use: messages of
 * any length, processed in 64-byte blocks, big-endian words. Two block functions: the
 * x86 SHA extensions where the CPU has them (about 70 ns a name on the benchmark
 * machine), else portable C (about 360 ns). The environment variable
 * RUNESHIFT_SHA1_PORTABLE, set before the import, forces the portable one (its test
 * uses that); ENGINE names the one in use.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ROTL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

/* One round: e += rotl(a, 5) + f(b, c, d) + k + w; b = rotl(b, 30); the callers rotate
 * the roles of a..e instead of moving values, so the 80 rounds need no branches. */
#define ROUND(a, b, c, d, e, f, k, w)             \
    do {                                          \
        (e) += ROTL((a), 5) + (f) + (k) + (w);    \
        (b) = ROTL((b), 30);                      \
    } while (0)

#define F0(b, c, d) (((b) & (c)) | (~(b) & (d)))
#define F1(b, c, d) ((b) ^ (c) ^ (d))
#define F2(b, c, d) (((b) & (c)) | ((b) & (d)) | ((c) & (d)))

static void
sha1_block_portable(uint32_t h[5], const unsigned char *block)
{
    uint32_t w[80];
    for (int t = 0; t < 16; t++) {
        w[t] = ((uint32_t)block[4 * t] << 24) | ((uint32_t)block[4 * t + 1] << 16) |
               ((uint32_t)block[4 * t + 2] << 8) | (uint32_t)block[4 * t + 3];
    }
    for (int t = 16; t < 80; t++) {
        w[t] = ROTL(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    /* Five rounds bring the roles back to a..e; each quarter of the 80 has its own f, k. */
#define FIVE_ROUNDS(f, k, t)                                \
    ROUND(a, b, c, d, e, f(b, c, d), (k), w[(t)]);          \
    ROUND(e, a, b, c, d, f(a, b, c), (k), w[(t) + 1]);      \
    ROUND(d, e, a, b, c, f(e, a, b), (k), w[(t) + 2]);      \
    ROUND(c, d, e, a, b, f(d, e, a), (k), w[(t) + 3]);      \
    ROUND(b, c, d, e, a, f(c, d, e), (k), w[(t) + 4])
    for (int t = 0; t < 20; t += 5) {
        FIVE_ROUNDS(F0, 0x5A827999u, t);
    }
    for (int t = 20; t < 40; t += 5) {
        FIVE_ROUNDS(F1, 0x6ED9EBA1u, t);
    }
    for (int t = 40; t < 60; t += 5) {
        FIVE_ROUNDS(F2, 0x8F1BBCDCu, t);
    }
    for (int t = 60; t < 80; t += 5) {
        FIVE_ROUNDS(F1, 0xCA62C1D6u, t);
    }
#undef FIVE_ROUNDS
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHANI_PATH 1

/* The same block with the x86 SHA extensions (SHA-NI), four rounds an instruction.
 * Vectors hold four words with the earliest in the top lane: abcd = (a, b, c, d) from
 * lane 3 down, e in lane 3 of its own vector. Group g is rounds 4g..4g+3; its message
 * vector is w[g], and sha1nexte derives the group's e (rotl(a, 30) of the state two
 * groups back) and adds it to w[g]. */
__attribute__((target("sha,sse4.1,ssse3"))) static void
sha1_block_shani(uint32_t h[5], const unsigned char *block)
{
    const __m128i reverse_bytes = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
    __m128i w[20];
    for (int g = 0; g < 4; g++) {
        __m128i raw = _mm_loadu_si128((const __m128i *)(block + 16 * g));
        w[g] = _mm_shuffle_epi8(raw, reverse_bytes);
    }
    for (int g = 4; g < 20; g++) {
        __m128i x = _mm_xor_si128(_mm_sha1msg1_epu32(w[g - 4], w[g - 3]), w[g - 2]);
        w[g] = _mm_sha1msg2_epu32(x, w[g - 1]);
    }
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)h), 0x1B);
    __m128i e_start = _mm_set_epi32((int)h[4], 0, 0, 0);
    __m128i abcd_start = abcd;
    __m128i before = abcd; /* the state before the previous group's rounds */
    abcd = _mm_sha1rnds4_epu32(abcd, _mm_add_epi32(e_start, w[0]), 0);
    /* the round function is an immediate operand: one loop per function */
#define GROUPS(first, last, f)                                            \
    for (int g = (first); g <= (last); g++) {                             \
        __m128i e = _mm_sha1nexte_epu32(before, w[g]);                    \
        before = abcd;                                                    \
        abcd = _mm_sha1rnds4_epu32(abcd, e, (f));                         \
    }
    GROUPS(1, 4, 0)
    GROUPS(5, 9, 1)
    GROUPS(10, 14, 2)
    GROUPS(15, 19, 3)
#undef GROUPS
    __m128i e_end = _mm_sha1nexte_epu32(before, e_start);
    abcd = _mm_shuffle_epi32(_mm_add_epi32(abcd, abcd_start), 0x1B);
    _mm_storeu_si128((__m128i *)h, abcd);
    h[4] = (uint32_t)_mm_extract_epi32(e_end, 3);
}

static int
cpu_has_shani(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        return 0;
    }
    int ssse3 = (ecx >> 9) & 1, sse41 = (ecx >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
        return 0;
    }
    return ssse3 && sse41 && ((ebx >> 29) & 1);
}
#endif

static void (*sha1_block)(uint32_t h[5], const unsigned char *block) = sha1_block_portable;


/* The first 16 bytes of SHA-1(prefix || name) into out. */
static void
sha1_head(const unsigned char *prefix, Py_ssize_t prefix_len, const unsigned char *name,
          Py_ssize_t name_len, unsigned char out[16])
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    unsigned char block[64];
    Py_ssize_t filled = 0;
    const unsigned char *parts[2] = {prefix, name};
    Py_ssize_t lengths[2] = {prefix_len, name_len};
    for (int p = 0; p < 2; p++) {
        const unsigned char *src = parts[p];
        Py_ssize_t left = lengths[p];
        while (left > 0) {
            Py_ssize_t take = 64 - filled < left ? 64 - filled : left;
            memcpy(block + filled, src, (size_t)take);
            filled += take;
            src += take;
            left -= take;
            if (filled == 64) {
                sha1_block(h, block);
                filled = 0;
            }
        }
    }
    uint64_t bits = (uint64_t)(prefix_len + name_len) * 8u;
    block[filled++] = 0x80;
    if (filled > 56) {
        memset(block + filled, 0, (size_t)(64 - filled));
        sha1_block(h, block);
        filled = 0;
    }
    memset(block + filled, 0, (size_t)(56 - filled));
    for (int i = 0; i < 8; i++) {
        block[63 - i] = (unsigned char)(bits >> (8 * i));
    }
    sha1_block(h, block);
    for (int i = 0; i < 4; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

/* The 36-character text of the uuid with these 16 bytes, version 5 and the RFC 4122
 * variant set (what Python's str(uuid.uuid5(...)) gives). */
static void
uuid5_text(unsigned char head[16], unsigned char out[36])
{
    static const char hex[] = "0123456789abcdef";
    head[6] = (unsigned char)((head[6] & 0x0F) | 0x50);
    head[8] = (unsigned char)((head[8] & 0x3F) | 0x80);
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = (unsigned char)hex[head[i] >> 4];
        out[o++] = (unsigned char)hex[head[i] & 0x0F];
    }
}

PyDoc_STRVAR(uuid5_texts_doc,
             "uuid5_texts(namespace, data, offsets) -> bytes\n\n"
             "str(uuid.uuid5(namespace, name)) for each name data[offsets[i]:offsets[i + 1]],\n"
             "36 ASCII bytes each, concatenated. namespace is the 16 bytes of the namespace\n"
             "uuid; offsets a buffer of native int64, non-decreasing, within data.");

static PyObject *
uuid5_texts(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer namespace, data, offsets;
    if (!PyArg_ParseTuple(args, "y*y*y*", &namespace, &data, &offsets)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t count = offsets.len / (Py_ssize_t)sizeof(int64_t) - 1;
    if (namespace.len != 16) {
        PyErr_SetString(PyExc_ValueError, "namespace must be the 16 bytes of a uuid");
        goto done;
    }
    if (offsets.len % (Py_ssize_t)sizeof(int64_t) != 0 || count < 0) {
        PyErr_SetString(PyExc_ValueError, "offsets must hold at least one int64");
        goto done;
    }
    const int64_t *offs = (const int64_t *)offsets.buf;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (offs[i] < 0 || offs[i] > offs[i + 1] || offs[i + 1] > data.len) {
            PyErr_Format(PyExc_ValueError, "offset %zd is out of order or outside data", i);
            goto done;
        }
    }
    result = PyBytes_FromStringAndSize(NULL, count * 36);
    if (result == NULL) {
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *base = (const unsigned char *)data.buf;
    const unsigned char *ns = (const unsigned char *)namespace.buf;
    Py_BEGIN_ALLOW_THREADS
    unsigned char head[16];
    for (Py_ssize_t i = 0; i < count; i++) {
        sha1_head(ns, 16, base + offs[i], (Py_ssize_t)(offs[i + 1] - offs[i]), head);
        uuid5_text(head, out + 36 * i);
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&namespace);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    return result;
}

static PyMethodDef methods[] = {
    {"uuid5_texts", uuid5_texts, METH_VARARGS, uuid5_texts_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_uuid5_batch", "uuid5 ids of a column of names.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__uuid5_batch(void)
{
    PyObject *m = PyModule_Create(&module);
    const char *engine = "portable";
#ifdef HAVE_SHANI_PATH
    if (cpu_has_shani() && getenv("RUNESHIFT_SHA1_PORTABLE") == NULL) {
        sha1_block = sha1_block_shani;
        engine = "sha-ni";
    }
#endif
    if (m != NULL && PyModule_AddStringConstant(m, "ENGINE", engine) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
