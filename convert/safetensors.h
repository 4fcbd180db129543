// safetensors.h: reads Hugging Face safetensors files, one or sharded.
//
// Contract: POSIX (pread) and libc. A file is: uint64 little-endian header length N, N bytes
// of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the data; offsets count from the end of the header. Every size and offset is checked
// against the file (and for overflow) when the file is opened; errors print one line naming
// the file and return -1. Tensors are read in element ranges, converted to f32, so a model
// need not fit in memory. Of the dtypes only F32, F16 and BF16 can be read: the others are
// refused by name when a tensor of theirs is read.
#ifndef SEARCHLIGHT_SAFETENSORS_H
#define SEARCHLIGHT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20)  // the safetensors format's own limit on N

typedef struct {
    char *name;
    char dtype[12];            // as the file names it: "F32", "BF16", ...
    int elsize;                // bytes per element
    int ndim;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin;            // absolute file offset of the data
    int file;                  // index into StModel.files
} StTensor;

typedef struct {
    char *path;
    int fd;
    uint64_t size;
} StFile;

typedef struct {
    StFile *files;
    int n_files;
    StTensor *tensors;
    size_t n_tensors;
} StModel;

// Opens dir/model.safetensors, or the shards that dir/model.safetensors.index.json lists in
// its "weight_map" (each tensor must be in the shard the map names). Returns 0 or -1.
int st_open_dir(StModel *m, const char *dir);
// Opens one file. Returns 0 or -1.
int st_open_file(StModel *m, const char *path);
void st_close(StModel *m);

const StTensor *st_find(const StModel *m, const char *name);
// Elements [first, first + count) of tensor t (row-major), as f32. Returns 0 or -1.
int st_read_f32(const StModel *m, const StTensor *t, uint64_t first, size_t count, float *out);

#endif
