/*
 * Column kernels in C for the mapping's hot path: each takes a whole Arrow column (its
 * data buffer and int64 offsets, transform/column_buffers.py) and runs with the GIL
 * released, where pyarrow has no kernel for the job or needs several passes. Their
 * Python callers fall back to pure Python/pyarrow when this module is not built.
 *
 * 1. uuid5 ids of a column of names, or of integer keys (transform/identity_keys.py)
 * 2. MySQL DATETIME text of the plain shape (transform/temporal.py)
 * 3. uuid text to its 16 bytes, and sets of uuids (load/copy_writer.py, transform/id_set.py)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Value i of a column is data[offsets[i]:offsets[i + 1]]: check that offsets say so
 * (non-decreasing, within data) and give the number of values, or set an exception. */
static int
column_count(const Py_buffer *data, const Py_buffer *offsets, Py_ssize_t *count)
{
    *count = offsets->len / (Py_ssize_t)sizeof(int64_t) - 1;
    if (offsets->len % (Py_ssize_t)sizeof(int64_t) != 0 || *count < 0) {
        PyErr_SetString(PyExc_ValueError, "offsets must hold at least one int64");
        return -1;
    }
    const int64_t *offs = (const int64_t *)offsets->buf;
    for (Py_ssize_t i = 0; i < *count; i++) {
        if (offs[i] < 0 || offs[i] > offs[i + 1] || offs[i + 1] > data->len) {
            PyErr_Format(PyExc_ValueError, "offset %zd is out of order or outside data", i);
            return -1;
        }
    }
    return 0;
}

/*
 * 1. uuid5 ids of a column of names (transform/identity_keys.py).
 *
 * uuid5(namespace, name) is the first 16 bytes of SHA-1(namespace || name) with the
 * version and variant bits set. hashlib costs about 400 ns a call here, most of it
 * creating an OpenSSL context per name, all of it holding the GIL, and formatting the
 * text in numpy another 100 ns; a backfill derives three ids per license. uuid5_texts
 * returns the ids' text for a whole column in one call (about 90 ns a name here).
 *
 * SHA-1 as FIPS 180-4 section 6.1 specifies it, written for this one use: messages of
 * any length, processed in 64-byte blocks, big-endian words. Two block functions: the
 * x86 SHA extensions where the CPU has them (about 70 ns a name on the benchmark
 * machine), else portable C (about 360 ns). The environment variable
 * RUNESHIFT_SHA1_PORTABLE, set before the import, forces the portable one (its test
 * uses that); ENGINE names the one in use.
 */

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
    Py_ssize_t count;
    if (namespace.len != 16) {
        PyErr_SetString(PyExc_ValueError, "namespace must be the 16 bytes of a uuid");
        goto done;
    }
    if (column_count(&data, &offsets, &count) < 0) {
        goto done;
    }
    const int64_t *offs = (const int64_t *)offsets.buf;
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

/* The decimal digits of value at out (no sign), returning how many. */
static int
decimal_digits(uint64_t value, unsigned char *out)
{
    unsigned char reversed[20];
    int n = 0;
    do {
        reversed[n++] = (unsigned char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    for (int i = 0; i < n; i++) {
        out[i] = reversed[n - 1 - i];
    }
    return n;
}

PyDoc_STRVAR(uuid5_int_texts_doc,
             "uuid5_int_texts(namespace, prefix, keys) -> bytes\n\n"
             "uuid5_texts of the names prefix + str(key) for each native int64 in keys\n"
             "(e.g. prefix b'license:' and 42 name 'license:42'), without building the names\n"
             "as a column first.");

static PyObject *
uuid5_int_texts(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer namespace, prefix, keys;
    if (!PyArg_ParseTuple(args, "y*y*y*", &namespace, &prefix, &keys)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (namespace.len != 16) {
        PyErr_SetString(PyExc_ValueError, "namespace must be the 16 bytes of a uuid");
        goto done;
    }
    if (keys.len % (Py_ssize_t)sizeof(int64_t) != 0 || prefix.len > 200) {
        PyErr_SetString(PyExc_ValueError, "keys must hold native int64; prefix at most 200 bytes");
        goto done;
    }
    Py_ssize_t count = keys.len / (Py_ssize_t)sizeof(int64_t);
    result = PyBytes_FromStringAndSize(NULL, count * 36);
    if (result == NULL) {
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const int64_t *values = (const int64_t *)keys.buf;
    const unsigned char *ns = (const unsigned char *)namespace.buf;
    Py_BEGIN_ALLOW_THREADS
    unsigned char name[232];
    unsigned char head[16];
    memcpy(name, prefix.buf, (size_t)prefix.len);
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t v = values[i];
        Py_ssize_t length = prefix.len;
        uint64_t magnitude = (uint64_t)v;
        if (v < 0) {
            name[length++] = '-';
            magnitude = 0u - magnitude;
        }
        length += decimal_digits(magnitude, name + length);
        sha1_head(ns, 16, name, length, head);
        uuid5_text(head, out + 36 * i);
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&namespace);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&keys);
    return result;
}

/*
 * 2. MySQL DATETIME text of the plain shape, parsed for a whole column
 * (transform/temporal.py).
 *
 * Readers hand DATETIME columns over as text (decision 0001). Almost every value has the
 * shape 'YYYY-MM-DD HH:MM:SS'; pyarrow needed a regex, a strptime and five field checks
 * to settle those (about 320 ns a value here, three values a license); plain_datetimes
 * settles them in one pass (about 30 ns a value): a value is settled when it
 * has exactly that shape and its fields name a real moment (year 1-9999, the month's
 * days, hours to 23, minutes and seconds to 59). Everything else (zero dates, DATE text,
 * fractions, junk) is left to temporal.py's full parser, so this decides nothing the
 * full parser would decide differently.
 */

/* Days from 1970-01-01 to year-month-day in the proleptic Gregorian calendar, by whole
 * 400-year eras counted from a year that starts in March (so the leap day ends a year). */
static int64_t
days_since_epoch(int64_t year, int64_t month, int64_t day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

static int
days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 ? 28 + leap : days[month - 1];
}

/* The number in the n digits at text, or -1 if one of them is not a digit. */
static int
digits(const unsigned char *text, int n)
{
    int value = 0;
    for (int i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return -1;
        }
        value = value * 10 + (text[i] - '0');
    }
    return value;
}

/* Microseconds since the epoch of a plain 'YYYY-MM-DD HH:MM:SS', if it is one. */
static int
parse_plain(const unsigned char *text, Py_ssize_t length, int64_t *micros)
{
    if (length != 19 || text[4] != '-' || text[7] != '-' || text[10] != ' ' ||
        text[13] != ':' || text[16] != ':') {
        return 0;
    }
    int year = digits(text, 4), month = digits(text + 5, 2), day = digits(text + 8, 2);
    int hour = digits(text + 11, 2), minute = digits(text + 14, 2);
    int second = digits(text + 17, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 ||
        minute < 0 || minute > 59 || second < 0 || second > 59) {
        return 0;
    }
    if (day > days_in_month(year, month)) {
        return 0;
    }
    int64_t days = days_since_epoch(year, month, day);
    *micros = ((days * 24 + hour) * 60 + minute) * 60 + second;
    *micros *= 1000000;
    return 1;
}

PyDoc_STRVAR(plain_datetimes_doc,
             "plain_datetimes(data, offsets) -> (micros, settled)\n\n"
             "For each text data[offsets[i]:offsets[i + 1]]: micros, native int64 microseconds\n"
             "since 1970-01-01 00:00:00 read as naive wall time (0 where not settled), and\n"
             "settled, one byte 1 or 0: whether the text is a plain 'YYYY-MM-DD HH:MM:SS' of a\n"
             "real moment. offsets is a buffer of native int64, non-decreasing, within data.");

/* What a per-value parser gives: 1 and width bytes at out, or 0 (out then unspecified). */
typedef int (*value_parser)(const unsigned char *text, Py_ssize_t length, unsigned char *out);

/* For the column (data, offsets) in args: (each value's parse, width bytes, zero where it
 * failed; one byte 1 or 0 per value saying whether it parsed). */
static PyObject *
parse_each(PyObject *args, Py_ssize_t width, value_parser parse)
{
    Py_buffer data, offsets;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &offsets)) {
        return NULL;
    }
    PyObject *result = NULL, *parsed = NULL, *flags = NULL;
    Py_ssize_t count;
    if (column_count(&data, &offsets, &count) < 0) {
        goto done;
    }
    parsed = PyBytes_FromStringAndSize(NULL, count * width);
    flags = PyBytes_FromStringAndSize(NULL, count);
    if (parsed == NULL || flags == NULL) {
        goto done;
    }
    const int64_t *offs = (const int64_t *)offsets.buf;
    const unsigned char *base = (const unsigned char *)data.buf;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(parsed);
    unsigned char *ok = (unsigned char *)PyBytes_AS_STRING(flags);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        ok[i] = (unsigned char)(parse(base + offs[i], (Py_ssize_t)(offs[i + 1] - offs[i]),
                                      out + width * i) != 0);
        if (!ok[i]) {
            memset(out + width * i, 0, (size_t)width);
        }
    }
    Py_END_ALLOW_THREADS
    result = PyTuple_Pack(2, parsed, flags);
done:
    Py_XDECREF(parsed);
    Py_XDECREF(flags);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    return result;
}

static int
parse_plain_value(const unsigned char *text, Py_ssize_t length, unsigned char *out)
{
    int64_t micros = 0;
    int ok = parse_plain(text, length, &micros);
    memcpy(out, &micros, sizeof micros);
    return ok;
}

static PyObject *
plain_datetimes(PyObject *Py_UNUSED(self), PyObject *args)
{
    return parse_each(args, (Py_ssize_t)sizeof(int64_t), parse_plain_value);
}

/*
 * 3. uuid text to its 16 bytes, and sets of uuids.
 *
 * The mapping keeps uuids as their canonical text (8-4-4-4-12 hex); binary COPY wants
 * the 16 bytes (load/copy_writer.py), and every chunk of licenses asks whether each of
 * its account and script ids is one of the ids already in Rune (the reference checks,
 * runeshift/backfill.py). numpy took about 200 ns a value for the lookups and 70 ns for
 * the bytes; here both are a single pass over the text.
 *
 * A set is a bytes object: a header of two uint64 (the number of slots, a power of
 * two, and whether the nil uuid is a member), then the slots, 16 bytes each, filled by
 * linear probing to at most half; an all-zero slot is empty (the nil uuid is kept in the
 * header instead). A uuid's slot comes from its middle bytes times a large odd
 * constant: uuid5 and random uuids are already uniform there.
 */

static signed char hex_value[256];

static void
init_hex_value(void)
{
    memset(hex_value, -1, sizeof hex_value);
    for (int i = 0; i < 10; i++) {
        hex_value['0' + i] = (signed char)i;
    }
    for (int i = 0; i < 6; i++) {
        hex_value['a' + i] = (signed char)(10 + i);
        hex_value['A' + i] = (signed char)(10 + i);
    }
}

/* The 16 bytes of canonical uuid text (either case), if text is one. */
static int
parse_uuid(const unsigned char *text, Py_ssize_t length, unsigned char out[16])
{
    if (length != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' ||
        text[23] != '-') {
        return 0;
    }
    static const int pair_at[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
    for (int o = 0; o < 16; o++) {
        int high = hex_value[text[pair_at[o]]], low = hex_value[text[pair_at[o] + 1]];
        if ((high | low) < 0) {
            return 0;
        }
        out[o] = (unsigned char)((high << 4) | low);
    }
    return 1;
}

static const unsigned char nil_uuid[16] = {0};

typedef struct {
    uint64_t slots;
    uint64_t has_nil;
} set_header;

static uint64_t
uuid_slot(const unsigned char uuid[16], uint64_t mask)
{
    uint64_t a, b;
    memcpy(&a, uuid, 8);
    memcpy(&b, uuid + 8, 8);
    uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15u)) * 0xBF58476D1CE4E5B9u;
    return (h >> 29 ^ h) & mask;
}

/* Whether uuid is in the set, or (insert) put it there. */
static int
set_probe(set_header *header, unsigned char *slots, const unsigned char uuid[16], int insert)
{
    if (memcmp(uuid, nil_uuid, 16) == 0) {
        int had = (int)header->has_nil;
        if (insert) {
            header->has_nil = 1;
        }
        return had;
    }
    uint64_t mask = header->slots - 1;
    for (uint64_t at = uuid_slot(uuid, mask);; at = (at + 1) & mask) {
        unsigned char *slot = slots + 16 * at;
        if (memcmp(slot, uuid, 16) == 0) {
            return 1;
        }
        if (memcmp(slot, nil_uuid, 16) == 0) {
            if (insert) {
                memcpy(slot, uuid, 16);
            }
            return 0;
        }
    }
}

PyDoc_STRVAR(uuid_bytes_doc,
             "uuid_bytes(data, offsets) -> (raw, parsed)\n\n"
             "For each text data[offsets[i]:offsets[i + 1]]: raw, its 16 bytes if it is\n"
             "canonical uuid text (8-4-4-4-12 hex, either case), else 16 zero bytes; parsed,\n"
             "one byte 1 or 0 saying which.");

static PyObject *
uuid_bytes(PyObject *Py_UNUSED(self), PyObject *args)
{
    return parse_each(args, 16, parse_uuid);
}

PyDoc_STRVAR(uuid_set_doc,
             "uuid_set(data, offsets) -> bytes\n\n"
             "The set (see uuid_set_contains) of the uuids whose canonical text is\n"
             "data[offsets[i]:offsets[i + 1]]. ValueError names the first value that is not\n"
             "canonical uuid text.");

static PyObject *
uuid_set(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer data, offsets;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &offsets)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t count;
    if (column_count(&data, &offsets, &count) < 0) {
        goto done;
    }
    uint64_t slots = 16;
    while (slots < 2 * (uint64_t)count) {
        slots *= 2;
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(sizeof(set_header) + 16 * slots));
    if (result == NULL) {
        goto done;
    }
    set_header *header = (set_header *)PyBytes_AS_STRING(result);
    unsigned char *table = (unsigned char *)(header + 1);
    memset(header, 0, sizeof(set_header) + 16 * slots);
    header->slots = slots;
    const int64_t *offs = (const int64_t *)offsets.buf;
    const unsigned char *base = (const unsigned char *)data.buf;
    Py_ssize_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    unsigned char uuid[16];
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!parse_uuid(base + offs[i], (Py_ssize_t)(offs[i + 1] - offs[i]), uuid)) {
            bad = i;
            break;
        }
        set_probe(header, table, uuid, 1);
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0) {
        Py_CLEAR(result);
        PyErr_Format(PyExc_ValueError, "value %zd is not canonical uuid text", bad);
    }
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    return result;
}

PyDoc_STRVAR(uuid_set_contains_doc,
             "uuid_set_contains(set, data, offsets) -> bytes\n\n"
             "One byte per text data[offsets[i]:offsets[i + 1]]: 1 if it is canonical uuid\n"
             "text of a member of set (from uuid_set), else 0.");

static PyObject *
uuid_set_contains(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer set, data, offsets;
    if (!PyArg_ParseTuple(args, "y*y*y*", &set, &data, &offsets)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t count;
    set_header header;
    if (set.len < (Py_ssize_t)sizeof header) {
        PyErr_SetString(PyExc_ValueError, "set is not one uuid_set made");
        goto done;
    }
    memcpy(&header, set.buf, sizeof header);
    if (header.slots == 0 || (header.slots & (header.slots - 1)) != 0 ||
        (uint64_t)set.len != sizeof header + 16 * header.slots) {
        PyErr_SetString(PyExc_ValueError, "set is not one uuid_set made");
        goto done;
    }
    if (column_count(&data, &offsets, &count) < 0) {
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, count);
    if (result == NULL) {
        goto done;
    }
    unsigned char *found = (unsigned char *)PyBytes_AS_STRING(result);
    unsigned char *table = (unsigned char *)set.buf + sizeof header;
    const int64_t *offs = (const int64_t *)offsets.buf;
    const unsigned char *base = (const unsigned char *)data.buf;
    Py_BEGIN_ALLOW_THREADS
    unsigned char uuid[16];
    for (Py_ssize_t i = 0; i < count; i++) {
        found[i] = (unsigned char)(parse_uuid(base + offs[i], (Py_ssize_t)(offs[i + 1] - offs[i]),
                                              uuid) &&
                                   set_probe(&header, table, uuid, 0));
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&set);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    return result;
}

static PyMethodDef methods[] = {
    {"uuid5_texts", uuid5_texts, METH_VARARGS, uuid5_texts_doc},
    {"uuid5_int_texts", uuid5_int_texts, METH_VARARGS, uuid5_int_texts_doc},
    {"plain_datetimes", plain_datetimes, METH_VARARGS, plain_datetimes_doc},
    {"uuid_bytes", uuid_bytes, METH_VARARGS, uuid_bytes_doc},
    {"uuid_set", uuid_set, METH_VARARGS, uuid_set_doc},
    {"uuid_set_contains", uuid_set_contains, METH_VARARGS, uuid_set_contains_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_column_kernels", "Column kernels for the mapping's hot path.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__column_kernels(void)
{
    init_hex_value();
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
