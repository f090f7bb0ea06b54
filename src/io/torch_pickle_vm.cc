// src/io/torch_pickle_vm.cc — a pickle machine that can only rebuild tensors; see torch_pickle_vm.h.
// Reference: CPython's Lib/pickle.py (opcodes) and torch/_weights_only_unpickler.py (allowed globals).
#include "io/torch_pickle_vm.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "io/printable.h"

namespace attn::io {

namespace {

constexpr size_t kMaxDims = 64;
constexpr size_t kMaxStack = 1u << 20;
// Every value costs ~100 bytes: a cap keeps a hostile stream of one-byte pushes from taking ~100x
// its size in memory. A state dict needs ~15 values per tensor, so this allows ~65,000 tensors per file.
constexpr size_t kMaxValues = 1u << 20;

struct Value {
  enum Kind { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, Tensor } kind = None;
  int64_t i = 0;
  double f = 0;
  std::string s;                      // Str, Bytes; Global "module.name"; Storage dtype
  std::vector<const Value*> items;    // Tuple, List; Dict as key, value, key, value, ...
  size_t begin = 0, nbytes = 0;       // Storage: its bytes in the file
  int64_t numel = 0;                  // Storage: elements of its dtype
  std::shared_ptr<const TorchFile::Entry> tensor;  // Tensor (rare: kept out of the common size)
};

// Globals the VM implements; each is in PyTorch's weights_only allow-list.
constexpr const char* kStorageTypes[] = {"FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage",
                                         "LongStorage",  "IntStorage",    "ShortStorage", "CharStorage",
                                         "ByteStorage",  "BoolStorage"};
constexpr const char* kCallables[] = {"collections.OrderedDict",         "torch._utils._rebuild_tensor",
                                      "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
                                      "torch._utils._rebuild_parameter_with_state",
                                      "torch._tensor._rebuild_from_type_v2", "_codecs.encode"};
constexpr const char* kTypes[] = {"torch.Tensor", "torch.nn.parameter.Parameter"};

class Machine {
 public:
  Machine(const uint8_t* p, size_t n, const StorageLookup& lookup, const std::string& file)
      : p_(p), n_(n), lookup_(lookup), file_(file) {}
  const Value* run();

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("torch pickle in '" + file_ + "', byte " + std::to_string(op_pos_) + ": " + what);
  }
  Value* make(Value::Kind k) {
    if (arena_.size() >= kMaxValues) fail("the pickle builds more than " + std::to_string(kMaxValues) + " values");
    arena_.push_back(std::make_unique<Value>());
    arena_.back()->kind = k;
    return arena_.back().get();
  }
  const uint8_t* take(size_t k) {
    if (n_ - pos_ < k) fail("truncated: needs " + std::to_string(k) + " more bytes");
    const uint8_t* q = p_ + pos_;
    pos_ += k;
    return q;
  }
  uint64_t le(size_t k) {
    const uint8_t* q = take(k);
    uint64_t v = 0;
    for (size_t j = k; j-- > 0;) v = v << 8 | q[j];
    return v;
  }
  std::string line() {  // GLOBAL's newline-terminated text arguments
    const uint8_t* q = p_ + pos_;
    const void* nl = std::memchr(q, '\n', n_ - pos_);
    if (!nl) fail("truncated: unterminated text argument");
    size_t len = static_cast<const uint8_t*>(nl) - q;
    pos_ += len + 1;
    return std::string(reinterpret_cast<const char*>(q), len);
  }
  std::string text(size_t len) { return std::string(reinterpret_cast<const char*>(take(len)), len); }
  void push(const Value* v) {
    if (stack_.size() >= kMaxStack) fail("stack grows beyond " + std::to_string(kMaxStack) + " items");
    stack_.push_back(v);
  }
  const Value* pop() {
    if (stack_.size() <= floor()) fail("stack underflow");
    const Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  const Value* top() {
    if (stack_.size() <= floor()) fail("stack underflow");
    return stack_.back();
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<const Value*> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<const Value*> items(stack_.begin() + ptrdiff_t(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  Value* mutable_top(Value::Kind k, const char* op) {  // containers are mutated in place, like Python
    const Value* v = top();
    if (v->kind != k) fail(std::string(op) + " on a value that is not a " + (k == Value::List ? "list" : "dict"));
    return const_cast<Value*>(v);
  }
  void memo_put(uint64_t idx) { memo_[idx] = top(); }
  void memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo entry " + std::to_string(idx) + " was never stored");
    push(it->second);
  }
  const Value* tuple(std::vector<const Value*> items) {
    Value* t = make(Value::Tuple);
    t->items = std::move(items);
    return t;
  }
  const Value* global(const std::string& module, const std::string& name);
  const Value* reduce(const Value* callable, const Value* args, int depth = 0);
  const Value* persistent_load(const Value* pid);
  const Value* rebuild_tensor(const std::vector<const Value*>& a, const char* who);
  void build(const Value* obj, const Value* state);
  bool push_literal(uint8_t op);
  bool step(uint8_t op);

  const uint8_t* p_;
  size_t n_, pos_ = 0, op_pos_ = 0;
  const StorageLookup& lookup_;
  const std::string& file_;
  std::vector<std::unique_ptr<Value>> arena_;
  std::vector<const Value*> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, const Value*> memo_;
  const Value* result_ = nullptr;
};

const Value* Machine::global(const std::string& module, const std::string& name) {
  std::string full = module + "." + name;
  bool known = std::any_of(std::begin(kCallables), std::end(kCallables), [&](const char* s) { return full == s; }) ||
               std::any_of(std::begin(kTypes), std::end(kTypes), [&](const char* s) { return full == s; }) ||
               (module == "torch" && std::any_of(std::begin(kStorageTypes), std::end(kStorageTypes),
                                                 [&](const char* s) { return name == s; }));
  if (!known)
    fail("global '" + printable(full) +
         "' is refused: only the tensor-rebuilding globals of a weights-only load are allowed (no code runs)");
  Value* g = make(Value::Global);
  g->s = full;
  return g;
}

const Value* Machine::persistent_load(const Value* pid) {
  // ('storage', torch.FloatStorage, '<key>', '<location>', numel)
  const auto& t = pid->items;
  if (pid->kind != Value::Tuple || t.size() != 5 || t[0]->kind != Value::Str || t[0]->s != "storage")
    fail("persistent id is not ('storage', type, key, location, numel)");
  if (t[1]->kind != Value::Global || t[1]->s.rfind("torch.", 0) != 0) fail("persistent id names no storage type");
  std::string dtype = t[1]->s.substr(6);
  size_t elem = torch_storage_element_size(dtype);
  if (elem == 0) fail("persistent id names no storage type");
  if (t[2]->kind != Value::Str) fail("storage key must be a string");
  if (t[4]->kind != Value::Int || t[4]->i < 0) fail("storage '" + printable(t[2]->s) + "': numel must be a non-negative integer");
  Value* s = make(Value::Storage);
  s->s = dtype;
  s->numel = t[4]->i;
  if (!lookup_(t[2]->s, &s->begin, &s->nbytes)) fail("storage '" + printable(t[2]->s) + "' has no data record");
  if (uint64_t(s->numel) > s->nbytes / elem)
    fail("storage '" + printable(t[2]->s) + "' claims " + std::to_string(s->numel) + " " + dtype + " elements but its record has " +
         std::to_string(s->nbytes) + " bytes");
  return s;
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
const Value* Machine::rebuild_tensor(const std::vector<const Value*>& a, const char* who) {
  if (a.size() < 4 || a[0]->kind != Value::Storage || a[1]->kind != Value::Int || a[2]->kind != Value::Tuple ||
      a[3]->kind != Value::Tuple)
    fail(std::string(who) + " needs (storage, offset, size, stride, ...)");
  const Value* st = a[0];
  const auto &size = a[2]->items, &stride = a[3]->items;
  if (size.size() != stride.size() || size.size() > kMaxDims)
    fail(std::string(who) + ": size and stride have " + std::to_string(size.size()) + " and " +
         std::to_string(stride.size()) + " dims");
  Value* t = make(Value::Tensor);
  auto entry = std::make_shared<TorchFile::Entry>();
  t->tensor = entry;
  TorchFile::Entry& e = *entry;
  e.storage_dtype = st->s;
  e.data_begin = st->begin;
  e.storage_numel = size_t(st->numel);
  e.storage_offset = a[1]->i;
  if (e.storage_offset < 0) fail(std::string(who) + ": negative storage offset");
  bool empty_tensor = false;
  uint64_t last = uint64_t(e.storage_offset);  // highest element index touched
  for (size_t d = 0; d < size.size(); ++d) {
    if (size[d]->kind != Value::Int || stride[d]->kind != Value::Int || size[d]->i < 0 || stride[d]->i < 0)
      fail(std::string(who) + ": size and stride must be non-negative integers");
    e.shape.push_back(size[d]->i);
    e.strides.push_back(stride[d]->i);
    if (size[d]->i == 0) empty_tensor = true;
    uint64_t span;
    if (size[d]->i > 0 && (__builtin_mul_overflow(uint64_t(size[d]->i - 1), uint64_t(stride[d]->i), &span) ||
                           __builtin_add_overflow(last, span, &last)))
      fail(std::string(who) + ": size x stride overflows");
  }
  uint64_t numel = 1;
  for (int64_t s : e.shape)
    if (__builtin_mul_overflow(numel, uint64_t(s), &numel) || numel > (uint64_t(1) << 48))
      fail(std::string(who) + ": element count overflows");
  if (!empty_tensor && last >= uint64_t(st->numel))
    fail(std::string(who) + ": tensor reaches element " + std::to_string(last) + " of a storage of " +
         std::to_string(st->numel));
  return t;
}

const Value* Machine::reduce(const Value* callable, const Value* args, int depth) {
  if (callable->kind != Value::Global) fail("REDUCE on a value that is not a global");
  if (args->kind != Value::Tuple) fail("REDUCE arguments are not a tuple");
  const std::string& g = callable->s;
  const auto& a = args->items;
  if (g == "collections.OrderedDict") {
    if (!a.empty()) fail("OrderedDict(...) with arguments is not supported");
    return make(Value::Dict);
  }
  if (g == "torch._utils._rebuild_tensor_v2" || g == "torch._utils._rebuild_tensor") return rebuild_tensor(a, g.c_str());
  if (g == "torch._utils._rebuild_parameter" || g == "torch._utils._rebuild_parameter_with_state") {
    if (a.empty() || a[0]->kind != Value::Tensor) fail(g + " needs a tensor");
    return a[0];
  }
  if (g == "torch._tensor._rebuild_from_type_v2") {  // (func, type, args, state)
    if (a.size() < 3 || a[1]->kind != Value::Global || a[2]->kind != Value::Tuple) fail(g + " needs (func, type, args, ...)");
    if (a[1]->s != "torch.Tensor" && a[1]->s != "torch.nn.parameter.Parameter")
      fail(g + ": tensor subclass '" + printable(a[1]->s) + "' is not supported");
    if (depth > 4) fail(g + " nested too deeply");
    return reduce(a[0], a[2], depth + 1);
  }
  if (g == "_codecs.encode") {  // protocol 2 pickles bytes as _codecs.encode(text, 'latin1')
    if (a.size() != 2 || a[0]->kind != Value::Str || a[1]->kind != Value::Str || a[1]->s != "latin1")
      fail("_codecs.encode needs (text, 'latin1')");
    Value* b = make(Value::Bytes);
    const std::string& s = a[0]->s;
    for (size_t i = 0; i < s.size(); ++i) {  // UTF-8 code points below 256 -> one byte each
      unsigned char c = static_cast<unsigned char>(s[i]);
      if (c < 0x80) b->s += char(c);
      else if ((c & 0xfe) == 0xc2 && i + 1 < s.size()) b->s += char(((c & 3) << 6) | (s[++i] & 0x3f));
      else fail("_codecs.encode: text is not latin-1");
    }
    return b;
  }
  fail("global '" + printable(g) + "' cannot be called");
}

void Machine::build(const Value* obj, const Value* state) {
  // OrderedDict state ({'_metadata': ...}) and parameter state are attributes attn has no use for.
  if (obj->kind == Value::Dict || obj->kind == Value::Tensor) return;
  (void)state;
  fail("BUILD on a value that is not a dict or tensor");
}

// Opcodes that push one literal (None, bools, ints, floats, strings, bytes); false for any other.
bool Machine::push_literal(uint8_t op) {
  switch (op) {
    case 'N': push(make(Value::None)); break;
    case 0x88: case 0x89: {                          // NEWTRUE, NEWFALSE
      Value* b = make(Value::Bool);
      b->i = op == 0x88;
      push(b);
      break;
    }
    case 'J': case 'K': case 'M': {                  // BININT, BININT1, BININT2
      Value* v = make(Value::Int);
      v->i = op == 'J' ? int64_t(int32_t(uint32_t(le(4)))) : int64_t(le(op == 'K' ? 1 : 2));
      push(v);
      break;
    }
    case 0x8a: {                                     // LONG1: little-endian two's complement
      size_t k = le(1);
      if (k > 8) fail("LONG1 of " + std::to_string(k) + " bytes does not fit 64 bits");
      uint64_t u = k ? le(k) : 0;
      if (k > 0 && k < 8 && (u >> (8 * k - 1)) & 1) u |= ~uint64_t(0) << (8 * k);
      Value* v = make(Value::Int);
      v->i = int64_t(u);
      push(v);
      break;
    }
    case 'G': {                                      // BINFLOAT: big-endian double
      const uint8_t* q = take(8);
      uint64_t u = 0;
      for (int j = 0; j < 8; ++j) u = u << 8 | q[j];
      Value* v = make(Value::Float);
      std::memcpy(&v->f, &u, 8);
      push(v);
      break;
    }
    case 'X': case 0x8c: case 0x8d: case 'T': case 'U': case 'B': case 'C': case 0x8e: {
      bool unicode = op == 'X' || op == 0x8c || op == 0x8d || op == 'T' || op == 'U';
      size_t len = (op == 0x8c || op == 'U' || op == 'C') ? le(1) : (op == 0x8d || op == 0x8e) ? le(8) : le(4);
      Value* v = make(unicode ? Value::Str : Value::Bytes);
      if (len > n_ - pos_) fail("truncated: string of " + std::to_string(len) + " bytes");
      v->s = text(len);
      push(v);
      break;
    }
    default: return false;
  }
  return true;
}

// One opcode; false after STOP.
bool Machine::step(uint8_t op) {
  switch (op) {
    case 0x80: take(1); break;                       // PROTO
    case 0x95: take(8); break;                       // FRAME: frames are only a read-ahead hint
    case '(': marks_.push_back(stack_.size()); break;  // MARK
    case '.': result_ = pop(); return false;         // STOP
    case '0': pop(); break;                          // POP
    case '1': pop_mark(); break;                     // POP_MARK
    case '2': push(top()); break;                    // DUP
    case ')': push(tuple({})); break;               // EMPTY_TUPLE
    case 't': push(tuple(pop_mark())); break;        // TUPLE
    case 0x85: case 0x86: case 0x87: {              // TUPLE1..3
      size_t k = op - 0x84;
      std::vector<const Value*> items(k);
      for (size_t j = k; j-- > 0;) items[j] = pop();
      push(tuple(std::move(items)));
      break;
    }
    case ']': push(make(Value::List)); break;        // EMPTY_LIST
    case 'l': {                                      // LIST
      Value* l = make(Value::List);
      l->items = pop_mark();
      push(l);
      break;
    }
    case 'a': {                                      // APPEND
      const Value* v = pop();
      mutable_top(Value::List, "APPEND")->items.push_back(v);
      break;
    }
    case 'e': {                                      // APPENDS
      std::vector<const Value*> items = pop_mark();
      Value* l = mutable_top(Value::List, "APPENDS");
      l->items.insert(l->items.end(), items.begin(), items.end());
      break;
    }
    case '}': push(make(Value::Dict)); break;        // EMPTY_DICT
    case 'd': case 'u': {                            // DICT, SETITEMS
      std::vector<const Value*> items = pop_mark();
      if (items.size() % 2) fail("odd number of items for a dict");
      Value* d = op == 'd' ? make(Value::Dict) : mutable_top(Value::Dict, "SETITEMS");
      d->items.insert(d->items.end(), items.begin(), items.end());
      if (op == 'd') push(d);
      break;
    }
    case 's': {                                      // SETITEM
      const Value* v = pop();
      const Value* k = pop();
      Value* d = mutable_top(Value::Dict, "SETITEM");
      d->items.push_back(k);
      d->items.push_back(v);
      break;
    }
    case 'q': memo_put(le(1)); break;                // BINPUT
    case 'r': memo_put(le(4)); break;                // LONG_BINPUT
    case 0x94: memo_put(memo_.size()); break;        // MEMOIZE
    case 'h': memo_get(le(1)); break;                // BINGET
    case 'j': memo_get(le(4)); break;                // LONG_BINGET
    case 'c': {                                      // GLOBAL module\nname\n
      std::string module = line();
      push(global(module, line()));
      break;
    }
    case 0x93: {                                     // STACK_GLOBAL
      const Value* name = pop();
      const Value* module = pop();
      if (name->kind != Value::Str || module->kind != Value::Str) fail("STACK_GLOBAL needs two strings");
      push(global(module->s, name->s));
      break;
    }
    case 'R': {                                      // REDUCE
      const Value* args = pop();
      const Value* callable = pop();
      push(reduce(callable, args));
      break;
    }
    case 'b': {                                      // BUILD
      const Value* state = pop();
      build(top(), state);
      break;
    }
    case 'Q': push(persistent_load(pop())); break;   // BINPERSID
    case 'i': {
      std::string module = line();
      fail("opcode INST '" + printable(module + "." + line()) + "' is refused (it calls arbitrary classes)");
    }
    case 'o': fail("opcode OBJ is refused (it calls arbitrary classes)");
    case 0x81: fail("opcode NEWOBJ is refused (it calls arbitrary classes)");
    case 0x92: fail("opcode NEWOBJ_EX is refused (it calls arbitrary classes)");
    case 0x82: case 0x83: case 0x84: fail("extension-registry opcodes (EXT1/2/4) are refused");
    default: {
      if (push_literal(op)) break;
      char buf[64];
      std::snprintf(buf, sizeof buf, "unsupported pickle opcode 0x%02x", op);
      fail(buf);
    }
  }
  return true;
}

const Value* Machine::run() {
  while (true) {
    op_pos_ = pos_;
    if (pos_ >= n_) fail("truncated: no STOP opcode");
    if (!step(p_[pos_++])) break;
  }
  return result_;
}

// The object torch.save wrote: {name: tensor}, or a dict holding one under "state_dict" / "model".
const Value* find_state_dict(const Value* v, const std::string& file) {
  if (v->kind != Value::Dict) throw std::runtime_error("torch pickle in '" + file + "': the object is not a dict of tensors");
  for (size_t i = 0; i + 1 < v->items.size(); i += 2)
    if (v->items[i + 1]->kind == Value::Tensor) return v;
  for (const char* name : {"state_dict", "model"})
    for (size_t i = 0; i + 1 < v->items.size(); i += 2)
      if (v->items[i]->kind == Value::Str && v->items[i]->s == name && v->items[i + 1]->kind == Value::Dict)
        return v->items[i + 1];
  return v;
}

}  // namespace

size_t torch_storage_element_size(const std::string& t) {
  if (t == "FloatStorage" || t == "IntStorage") return 4;
  if (t == "DoubleStorage" || t == "LongStorage") return 8;
  if (t == "HalfStorage" || t == "BFloat16Storage" || t == "ShortStorage") return 2;
  if (t == "CharStorage" || t == "ByteStorage" || t == "BoolStorage") return 1;
  return 0;
}

std::map<std::string, TorchFile::Entry> run_state_dict_pickle(const uint8_t* pkl, size_t n, const StorageLookup& lookup,
                                                              const std::string& file) {
  Machine m(pkl, n, lookup, file);
  const Value* sd = find_state_dict(m.run(), file);
  std::map<std::string, TorchFile::Entry> out;
  for (size_t i = 0; i + 1 < sd->items.size(); i += 2) {
    const Value *k = sd->items[i], *v = sd->items[i + 1];
    if (v->kind != Value::Tensor) continue;
    if (k->kind != Value::Str) throw std::runtime_error("torch pickle in '" + file + "': a tensor's name is not a string");
    out[k->s] = *v->tensor;  // a repeated key keeps the last value, as a Python dict does
  }
  return out;
}

}  // namespace attn::io
