/* The Y, Cb and Cr planes of a 4:2:0 JPEG, as libjpeg-turbo decodes them before colour
 * conversion (raw_data_out), at 1/denom scale in the DCT domain.
 *
 * A thumbnail that is written back as a 4:2:0 JPEG can be computed on these planes: no
 * chroma upsampling and YCbCr->RGB conversion on decode, a quarter of the chroma pixels to
 * resize and blur, and no RGB->YCbCr conversion and chroma downsampling on encode
 * (pixelmill.jobs uses it for pipelines of area resizes, gaussians, quarter turns and
 * flips; see _planar.py). encode_planes writes such planes back (raw_data_in, accurate DCT).
 *
 * Anything but a clean baseline or progressive 8-bit YCbCr 4:2:0 file returns None, and so
 * does any warning libjpeg gives (damaged data): the caller then decodes the ordinary way,
 * which reports the damage. Errors never exit the process: libjpeg's error_exit jumps back
 * here (setjmp), and the decoder is destroyed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <setjmp.h>
#include <stdio.h>
#include <jpeglib.h>
#include <jerror.h>

/* libjpeg 7+ (and libjpeg-turbo built with its jpeg7/jpeg8 API, as Ubuntu's libjpeg-turbo8
 * is) split the DCT scaled sizes into horizontal and vertical ones */
#if JPEG_LIB_VERSION >= 70
#define MIN_V_SCALED(c) ((c)->min_DCT_v_scaled_size)
#define H_SCALED(cp) ((cp)->DCT_h_scaled_size)
#define V_SCALED(cp) ((cp)->DCT_v_scaled_size)
#else
#define MIN_V_SCALED(c) ((c)->min_DCT_scaled_size)
#define H_SCALED(cp) ((cp)->DCT_scaled_size)
#define V_SCALED(cp) ((cp)->DCT_scaled_size)
#endif

struct err_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int warned;
};

static void on_error(j_common_ptr cinfo) { longjmp(((struct err_mgr *)cinfo->err)->jump, 1); }

static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) /* a warning: data was damaged (libjpeg goes on with gray) */
        ((struct err_mgr *)cinfo->err)->warned = 1;
}

static int is_420(struct jpeg_decompress_struct *c) {
    return c->jpeg_color_space == JCS_YCbCr && c->num_components == 3
        && c->data_precision == 8
        && c->comp_info[0].h_samp_factor == 2 && c->comp_info[0].v_samp_factor == 2
        && c->comp_info[1].h_samp_factor == 1 && c->comp_info[1].v_samp_factor == 1
        && c->comp_info[2].h_samp_factor == 1 && c->comp_info[2].v_samp_factor == 1;
}

static PyObject *decode_planes(PyObject *self, PyObject *args) {
    Py_buffer buf;
    int denom;
    if (!PyArg_ParseTuple(args, "y*i", &buf, &denom))
        return NULL;
    if (denom != 1 && denom != 2 && denom != 4 && denom != 8) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "denom: expected 1, 2, 4 or 8");
        return NULL;
    }
    struct jpeg_decompress_struct cinfo;
    struct err_mgr jerr;
    PyObject *volatile planes[3] = {NULL, NULL, NULL};
    JSAMPROW *volatile rows[3] = {NULL, NULL, NULL};
    PyThreadState *volatile released = NULL;
    volatile int created = 0, ok = 0;
    int width[3], height[3], stride[3], nrows[3], per[3];
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = on_error;
    jerr.pub.emit_message = on_message;
    jerr.warned = 0;
    if (setjmp(jerr.jump))
        goto done;
    jpeg_create_decompress(&cinfo);
    created = 1;
    jpeg_mem_src(&cinfo, (const unsigned char *)buf.buf, (unsigned long)buf.len);
    if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK || !is_420(&cinfo) || jerr.warned)
        goto done;
    cinfo.raw_data_out = TRUE;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned int)denom;
    jpeg_start_decompress(&cinfo);
    int step = cinfo.max_v_samp_factor * MIN_V_SCALED(&cinfo);
    int imcu_rows = (int)((cinfo.output_height + step - 1) / step);
    for (int c = 0; c < 3; c++) {
        jpeg_component_info *cp = &cinfo.comp_info[c];
        int block = H_SCALED(cp), mcu_w = cp->h_samp_factor * block;
        per[c] = cp->v_samp_factor * V_SCALED(cp);
        /* whole MCUs wide: the last MCU column may hold a dummy block */
        stride[c] = (int)((cp->width_in_blocks * block + mcu_w - 1) / mcu_w * mcu_w);
        nrows[c] = imcu_rows * per[c];
        width[c] = (int)cp->downsampled_width;
        height[c] = (int)cp->downsampled_height;
        planes[c] = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)stride[c] * nrows[c]);
        rows[c] = PyMem_Malloc(sizeof(JSAMPROW) * (size_t)per[c]);
        if (planes[c] == NULL || rows[c] == NULL) {
            if (!PyErr_Occurred())
                PyErr_NoMemory();
            goto done;
        }
    }
    unsigned char *base[3];
    for (int c = 0; c < 3; c++)
        base[c] = (unsigned char *)PyByteArray_AS_STRING(planes[c]);
    released = PyEval_SaveThread();
    for (int r = 0; r < imcu_rows; r++) {
        JSAMPARRAY arrays[3];
        for (int c = 0; c < 3; c++) {
            for (int i = 0; i < per[c]; i++)
                rows[c][i] = base[c] + ((size_t)r * per[c] + i) * stride[c];
            arrays[c] = rows[c];
        }
        if (jpeg_read_raw_data(&cinfo, arrays, (JDIMENSION)step) != (JDIMENSION)step)
            goto done; /* suspended: the data ended */
    }
    jpeg_finish_decompress(&cinfo);
    ok = !jerr.warned;
done:
    if (released != NULL)
        PyEval_RestoreThread(released);
    if (created)
        jpeg_destroy_decompress(&cinfo);
    PyObject *result = NULL;
    if (ok)
        result = Py_BuildValue("((OiiiI)(OiiiI)(OiiiI))",
                               planes[0], width[0], height[0], stride[0], (unsigned)nrows[0],
                               planes[1], width[1], height[1], stride[1], (unsigned)nrows[1],
                               planes[2], width[2], height[2], stride[2], (unsigned)nrows[2]);
    for (int c = 0; c < 3; c++) {
        Py_XDECREF(planes[c]);
        if (rows[c] != NULL)
            PyMem_Free(rows[c]);
    }
    PyBuffer_Release(&buf);
    if (result == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return result;
}

/* A destination that grows one malloc'd buffer this file owns (jpeg_mem_dest frees its first
 * buffer when it grows and hands the new one out only at the end: after an error midway the
 * caller could neither free nor trust what it holds). */
struct grow_dest {
    struct jpeg_destination_mgr pub;
    unsigned char *buf;
    size_t cap, len;
};

static void grow_init(j_compress_ptr cinfo) {
    struct grow_dest *d = (struct grow_dest *)cinfo->dest;
    d->pub.next_output_byte = d->buf;
    d->pub.free_in_buffer = d->cap;
}

static boolean grow_empty(j_compress_ptr cinfo) {
    struct grow_dest *d = (struct grow_dest *)cinfo->dest;
    size_t cap = d->cap * 2;
    unsigned char *bigger = realloc(d->buf, cap);
    if (bigger == NULL)
        ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 10);
    d->buf = bigger;
    d->pub.next_output_byte = bigger + d->cap; /* libjpeg fills the whole buffer first */
    d->pub.free_in_buffer = cap - d->cap;
    d->cap = cap;
    return TRUE;
}

static void grow_term(j_compress_ptr cinfo) {
    struct grow_dest *d = (struct grow_dest *)cinfo->dest;
    d->len = d->cap - d->pub.free_in_buffer;
}

/* The 4:2:0 JPEG of planes padded by the caller to whole MCUs (16x16 luma, 8x8 chroma; the
 * pad replicates the edge, as libjpeg pads RGB input): raw_data_in, so no colour conversion
 * and no chroma downsampling, and the accurate integer DCT, as OpenCV's encoder uses. */
static PyObject *encode_planes(PyObject *self, PyObject *args) {
    Py_buffer yb, cbb, crb;
    int width, height, ystride, cstride, quality;
    if (!PyArg_ParseTuple(args, "y*y*y*iiiii", &yb, &cbb, &crb, &width, &height, &ystride,
                          &cstride, &quality))
        return NULL;
    PyObject *result = NULL;
    int mcus_x = (width + 15) / 16, mcus_y = (height + 15) / 16;
    if (width < 1 || height < 1 || width > 65500 || height > 65500) {
        PyErr_Format(PyExc_ValueError, "encode_planes: %dx%d is not a JPEG size (1-65500)",
                     width, height);
        goto release;
    }
    if (quality < 1 || quality > 100) {
        PyErr_Format(PyExc_ValueError, "encode_planes: quality %d is not 1-100", quality);
        goto release;
    }
    if (ystride < mcus_x * 16 || cstride < mcus_x * 8
        || yb.len < (Py_ssize_t)ystride * mcus_y * 16
        || cbb.len < (Py_ssize_t)cstride * mcus_y * 8
        || crb.len < (Py_ssize_t)cstride * mcus_y * 8) {
        PyErr_SetString(PyExc_ValueError, "encode_planes: planes not padded to whole MCUs");
        goto release;
    }
    struct jpeg_compress_struct cinfo;
    struct err_mgr jerr;
    struct grow_dest dest = {{0}, NULL, 0, 0};
    PyThreadState *volatile released = NULL;
    volatile int created = 0, ok = 0;
    char message[JMSG_LENGTH_MAX] = "";
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = on_error;
    jerr.pub.emit_message = on_message;
    jerr.warned = 0;
    if (setjmp(jerr.jump)) {
        (*cinfo.err->format_message)((j_common_ptr)&cinfo, message);
        goto done;
    }
    jpeg_create_compress(&cinfo);
    created = 1;
    dest.cap = (size_t)width * height / 2 + 65536; /* ~q95 photo size: rarely grown */
    dest.buf = malloc(dest.cap);
    if (dest.buf == NULL)
        ERREXIT1(&cinfo, JERR_OUT_OF_MEMORY, 10);
    dest.pub.init_destination = grow_init;
    dest.pub.empty_output_buffer = grow_empty;
    dest.pub.term_destination = grow_term;
    cinfo.dest = &dest.pub;
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_YCbCr;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    cinfo.raw_data_in = TRUE;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.comp_info[0].h_samp_factor = cinfo.comp_info[0].v_samp_factor = 2;
    for (int c = 1; c < 3; c++)
        cinfo.comp_info[c].h_samp_factor = cinfo.comp_info[c].v_samp_factor = 1;
    const unsigned char *base[3] = {yb.buf, cbb.buf, crb.buf};
    const int strides[3] = {ystride, cstride, cstride}, per[3] = {16, 8, 8};
    JSAMPROW rows[3][16];
    released = PyEval_SaveThread();
    jpeg_start_compress(&cinfo, TRUE);
    for (int r = 0; r < mcus_y; r++) {
        JSAMPARRAY arrays[3];
        for (int c = 0; c < 3; c++) {
            for (int i = 0; i < per[c]; i++)
                rows[c][i] = (JSAMPROW)(base[c] + ((size_t)r * per[c] + i) * strides[c]);
            arrays[c] = rows[c];
        }
        if (jpeg_write_raw_data(&cinfo, arrays, 16) != 16)
            goto done; /* pragma: no cover - a memory destination never suspends */
    }
    jpeg_finish_compress(&cinfo);
    ok = 1;
done:
    if (released != NULL)
        PyEval_RestoreThread(released);
    if (ok)
        result = PyBytes_FromStringAndSize((const char *)dest.buf, (Py_ssize_t)dest.len);
    else if (!PyErr_Occurred())
        PyErr_Format(PyExc_RuntimeError, "libjpeg: %s", message[0] ? message : "encoding failed");
    if (created)
        jpeg_destroy_compress(&cinfo);
    free(dest.buf);
release:
    PyBuffer_Release(&yb);
    PyBuffer_Release(&cbb);
    PyBuffer_Release(&crb);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_planes", decode_planes, METH_VARARGS,
     "decode_planes(data, denom) -> ((plane, width, height, stride, rows) x 3) or None\n\n"
     "The Y, Cb, Cr planes of an 8-bit 4:2:0 JPEG at 1/denom scale (bytearrays of rows x\n"
     "stride bytes, of which height x width are the image); None for any other JPEG and for\n"
     "any libjpeg warning or error."},
    {"encode_planes", encode_planes, METH_VARARGS,
     "encode_planes(y, cb, cr, width, height, ystride, cstride, quality) -> bytes\n\n"
     "A baseline 4:2:0 JPEG (accurate DCT) of Y/Cb/Cr planes padded to whole MCUs: y holds\n"
     "ceil(height/16)*16 rows of ystride bytes, cb and cr ceil(height/16)*8 rows of cstride."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jpegyuv",
                                    "libjpeg-turbo's raw Y/Cb/Cr planes of 4:2:0 JPEGs.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__jpegyuv(void) { return PyModule_Create(&module); }
