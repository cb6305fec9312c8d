/*
 * A query's result read straight into Arrow-shaped column buffers, for the snapshot
 * reader's chunks (extract/snapshot_reader.py).
 *
 * mysqlclient's cursor makes a Python bytes object of every value, and the reader then
 * turned each column of them into an Arrow array: about 1.6 CPU s per million licenses
 * (twelve columns), all of it holding the GIL the mapping thread needs. read_columns
 * runs the query on the same connection (so inside the same consistent snapshot), with
 * the GIL released, and copies each row's values into per-column buffers laid out as
 * Arrow binary arrays: int32 offsets, the bytes, and a validity bitmap. The values stay
 * the raw text the server sends (decision 0001); the reader casts them as before.
 *
 * The connection comes from mysqlclient's Connection._get_native_connection(), a
 * capsule holding its MYSQL*; the module links the same libmariadb. The caller keeps
 * the connection object alive and uses it from one thread, as with a cursor.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <mysql.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char capsule_name[] = "_mysql.connection.native_connection";

/* A growing byte buffer. */
typedef struct {
    unsigned char *bytes;
    size_t length;
    size_t capacity;
} buffer;

static int
reserve(buffer *b, size_t more)
{
    if (b->length + more <= b->capacity) {
        return 1;
    }
    size_t capacity = b->capacity ? b->capacity : 4096;
    while (capacity < b->length + more) {
        capacity *= 2;
    }
    unsigned char *bytes = realloc(b->bytes, capacity);
    if (bytes == NULL) {
        return 0;
    }
    b->bytes = bytes;
    b->capacity = capacity;
    return 1;
}

typedef struct {
    buffer data;
    buffer offsets;  /* int32, one per row and one more */
    buffer validity; /* one bit per row, least significant first */
    int64_t nulls;
} column;

/* Append one value (NULL: a null) to column c as row number row. */
static int
append(column *c, int64_t row, const char *value, unsigned long length)
{
    if ((row & 7) == 0) {
        if (!reserve(&c->validity, 1)) {
            return 0;
        }
        c->validity.bytes[c->validity.length++] = 0;
    }
    if (value == NULL) {
        c->nulls++;
    } else {
        c->validity.bytes[row >> 3] |= (unsigned char)(1u << (row & 7));
        if (!reserve(&c->data, length)) {
            return 0;
        }
        memcpy(c->data.bytes + c->data.length, value, length);
        c->data.length += length;
    }
    if (c->data.length > INT32_MAX || !reserve(&c->offsets, sizeof(int32_t))) {
        return 0;
    }
    int32_t end = (int32_t)c->data.length;
    memcpy(c->offsets.bytes + c->offsets.length, &end, sizeof end);
    c->offsets.length += sizeof end;
    return 1;
}

static PyObject *
bytes_of(const buffer *b)
{
    return PyBytes_FromStringAndSize((const char *)b->bytes, (Py_ssize_t)b->length);
}

PyDoc_STRVAR(read_columns_doc,
             "read_columns(native_connection, query) -> (rows, columns)\n\n"
             "Run query (bytes) on the connection mysqlclient's _get_native_connection()\n"
             "gives and read its whole result. columns holds, per result column, (data,\n"
             "offsets, validity): the values' bytes, native int32 offsets (rows + 1), and an\n"
             "Arrow validity bitmap, or None when no value is NULL. A server or network error\n"
             "raises RuntimeError(errno, message).");

static PyObject *
read_columns(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *capsule;
    const char *query;
    Py_ssize_t query_length;
    if (!PyArg_ParseTuple(args, "Oy#", &capsule, &query, &query_length)) {
        return NULL;
    }
    MYSQL *mysql = PyCapsule_GetPointer(capsule, capsule_name);
    if (mysql == NULL) {
        return NULL;
    }
    unsigned int error = 0, fields = 0;
    int64_t rows = 0;
    int out_of_memory = 0;
    column *columns = NULL;
    char message[512] = "";
    Py_BEGIN_ALLOW_THREADS
    MYSQL_RES *result = NULL;
    if (mysql_real_query(mysql, query, (unsigned long)query_length) != 0 ||
        (result = mysql_use_result(mysql)) == NULL) {
        error = mysql_errno(mysql);
    } else {
        fields = mysql_num_fields(result);
        columns = calloc(fields ? fields : 1, sizeof(column));
        out_of_memory = columns == NULL;
        for (unsigned int f = 0; f < fields && !out_of_memory; f++) {
            int32_t zero = 0;
            out_of_memory = !reserve(&columns[f].offsets, sizeof zero);
            if (!out_of_memory) {
                memcpy(columns[f].offsets.bytes, &zero, sizeof zero);
                columns[f].offsets.length = sizeof zero;
            }
        }
        MYSQL_ROW row;
        while (!out_of_memory && (row = mysql_fetch_row(result)) != NULL) {
            unsigned long *lengths = mysql_fetch_lengths(result);
            for (unsigned int f = 0; f < fields && !out_of_memory; f++) {
                out_of_memory = !append(&columns[f], rows, row[f], lengths[f]);
            }
            rows++;
        }
        if (!out_of_memory) {
            error = mysql_errno(mysql); /* fetch_row's NULL: the end, or an error */
        }
        mysql_free_result(result); /* reads what is left of the result, if anything */
    }
    if (error) {
        snprintf(message, sizeof message, "%s", mysql_error(mysql));
    }
    Py_END_ALLOW_THREADS

    PyObject *out = NULL;
    if (out_of_memory) {
        PyErr_SetString(PyExc_MemoryError, "read_columns: a column outgrew memory or 2 GiB");
    } else if (error) {
        PyObject *detail = Py_BuildValue("(Is)", error, message);
        if (detail != NULL) {
            PyErr_SetObject(PyExc_RuntimeError, detail);
            Py_DECREF(detail);
        }
    } else {
        PyObject *list = PyList_New(fields);
        for (unsigned int f = 0; list != NULL && f < fields; f++) {
            column *c = &columns[f];
            PyObject *validity = c->nulls ? bytes_of(&c->validity) : Py_NewRef(Py_None);
            PyObject *item = validity == NULL ? NULL
                                              : Py_BuildValue("(NNN)", bytes_of(&c->data),
                                                              bytes_of(&c->offsets), validity);
            if (item == NULL) {
                Py_CLEAR(list);
                break;
            }
            PyList_SET_ITEM(list, f, item);
        }
        if (list != NULL) {
            out = Py_BuildValue("(LN)", (long long)rows, list);
        }
    }
    for (unsigned int f = 0; columns != NULL && f < fields; f++) {
        free(columns[f].data.bytes);
        free(columns[f].offsets.bytes);
        free(columns[f].validity.bytes);
    }
    free(columns);
    return out;
}

static PyMethodDef methods[] = {
    {"read_columns", read_columns, METH_VARARGS, read_columns_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mysql_columns",
    "A MySQL result read into Arrow-shaped column buffers.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__mysql_columns(void)
{
    return PyModule_Create(&module);
}
