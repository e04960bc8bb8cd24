// The few parts of XLA's FFI C ABI (xla/ffi/api/c_api.h in openxla/xla) that ssmkit's
// handlers use, declared here so that the build needs neither XLA nor jax: a handler
// is `XLA_FFI_Error* handler(XLA_FFI_CallFrame*)`, reads its buffers and attributes from
// the call frame, and reports errors through the API's error constructor.
//
// Only leading fields are declared where a struct is longer: XLA passes pointers to
// its own (possibly newer, longer) structs and every field used here sits at the same
// offset in every version of the ABI's major version 0. The version claimed is the
// oldest that has every function and field used here (the stream getter and the
// metadata extension): 0.1.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ssmkit::xla_ffi {

constexpr int kApiMajor = 0, kApiMinor = 1;

struct Api;
struct Error;             // opaque, made by Api::error_create
struct ExecutionContext;  // opaque

enum ExtensionType : int32_t { kExtensionMetadata = 1 };

struct ExtensionBase {
  size_t struct_size;
  ExtensionType type;
  ExtensionBase* next;
};

struct ApiVersion {
  size_t struct_size;
  ExtensionBase* extension_start;
  int major_version;
  int minor_version;
};

enum ErrorCode : int32_t { kInvalidArgument = 3, kInternal = 13 };

struct ErrorCreateArgs {
  size_t struct_size;
  ExtensionBase* extension_start;
  const char* message;
  ErrorCode errc;
};

struct StreamGetArgs {
  size_t struct_size;
  ExtensionBase* extension_start;
  ExecutionContext* ctx;
  void* stream;  // out: a cudaStream_t on the CUDA platform
};

// Element types of buffers and scalar attributes (XLA's PrimitiveType numbers).
enum DataType : int32_t {
  kPred = 1,
  kS8 = 2,
  kS16 = 3,
  kS32 = 4,
  kS64 = 5,
  kU8 = 6,
  kU16 = 7,
  kU32 = 8,
  kU64 = 9,
  kF16 = 10,
  kF32 = 11,
  kF64 = 12,
  kC64 = 15,
  kBF16 = 16,
  kC128 = 18,
};

struct Buffer {
  size_t struct_size;
  ExtensionBase* extension_start;
  DataType dtype;
  void* data;
  int64_t rank;
  int64_t* dims;  // rank of them, row-major and dense
};

enum AttrType : int32_t { kAttrArray = 1, kAttrDictionary = 2, kAttrScalar = 3, kAttrString = 4 };

struct ByteSpan {
  const char* ptr;
  size_t len;
};

struct Scalar {
  DataType dtype;
  void* value;
};

// The call's arguments, or its results (the same layout).
struct Operands {
  size_t struct_size;
  ExtensionBase* extension_start;
  int64_t size;
  int32_t* types;  // 1: a buffer
  void** items;    // Buffer*
};

// Sorted by name.
struct Attrs {
  size_t struct_size;
  ExtensionBase* extension_start;
  int64_t size;
  AttrType* types;
  ByteSpan** names;
  void** attrs;  // Scalar* for scalars, ByteSpan* for strings
};

enum ExecutionStage : int32_t { kInstantiate = 0, kPrepare = 1, kInitialize = 2, kExecute = 3 };

struct CallFrame {
  size_t struct_size;
  ExtensionBase* extension_start;  // the metadata extension when XLA asks for it
  const Api* api;
  ExecutionContext* ctx;
  ExecutionStage stage;
  Operands args;
  Operands rets;
  Attrs attrs;
};

using Handler = Error*(CallFrame*);
using ErrorCreate = Error*(ErrorCreateArgs*);
using StreamGet = Error*(StreamGetArgs*);

// The API table: only the leading entries up to the stream getter.
struct Api {
  size_t struct_size;
  ExtensionBase* extension_start;
  ApiVersion api_version;
  const void* internal_api;
  ErrorCreate* error_create;
  void* error_get_message;
  void* error_destroy;
  void* handler_register;
  StreamGet* stream_get;
};

// What a handler reports about itself when registered.
struct Metadata {
  size_t struct_size;
  ApiVersion api_version;
  uint32_t traits;
};

struct MetadataExtension {
  ExtensionBase extension_base;
  Metadata* metadata;
};

}  // namespace ssmkit::xla_ffi
