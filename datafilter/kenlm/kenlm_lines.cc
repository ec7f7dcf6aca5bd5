// _kenlm_lines: KenLM scoring of normalised lines from cached word pieces.
//
// A line is split at ASCII spaces into words; each word's SentencePiece pieces are looked up,
// as KenLM vocabulary ids, in a cache that Python fills (``prepare`` names the words it lacks,
// ``add`` stores their pieces, ``score`` scores the prepared lines). Each line is then scored exactly as kenlm's Python
// ``Model.score(line, bos=True, eos=True)`` scores the space-joined pieces (same float
// accumulation, same </s>), without building any Python string per token.
//
// Built by datafilter.kenlm_native against the kenlm sdist's C++ sources; no other library.

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "lm/config.hh"
#include "lm/model.hh"
#include "lm/state.hh"
#include "lm/virtual_interface.hh"

namespace {

// Words -> KenLM ids, open addressing over a byte arena. A record is
// [uint32 key length][uint32 id count][key bytes, padded to 4][uint32 ids]; slots hold the
// word's hash and its record's offset (0: empty; the arena starts with 4 unused bytes).
class WordTable {
 public:
  WordTable() { clear(); }

  void clear() {
    slots_.assign(1024, Slot{0, 0});
    arena_.assign(1, 0);
    size_ = 0;
  }

  size_t size() const { return size_; }

  // The record offset of ``word``, or 0.
  uint32_t find(std::string_view word) const {
    uint64_t hash = hash_of(word);
    size_t mask = slots_.size() - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      const Slot &slot = slots_[i];
      if (slot.offset == 0) return 0;
      if (slot.hash == hash && key(slot.offset) == word) return slot.offset;
    }
  }

  void insert(std::string_view word, const std::vector<lm::WordIndex> &ids) {
    if (find(word) != 0) return;
    if ((size_ + 1) * 2 > slots_.size()) grow();
    uint32_t offset = static_cast<uint32_t>(arena_.size());
    arena_.push_back(static_cast<uint32_t>(word.size()));
    arena_.push_back(static_cast<uint32_t>(ids.size()));
    size_t key_words = (word.size() + 3) / 4;
    size_t at = arena_.size();
    arena_.resize(at + key_words, 0);
    std::memcpy(arena_.data() + at, word.data(), word.size());
    arena_.insert(arena_.end(), ids.begin(), ids.end());
    place(Slot{hash_of(word), offset});
    ++size_;
  }

  // The ids of the record at ``offset``.
  std::pair<const lm::WordIndex *, uint32_t> ids(uint32_t offset) const {
    const uint32_t *record = arena_.data() + offset;
    return {record + 2 + (record[0] + 3) / 4, record[1]};
  }

 private:
  struct Slot {
    uint64_t hash;
    uint32_t offset;
  };

  static uint64_t hash_of(std::string_view word) { return std::hash<std::string_view>{}(word); }

  std::string_view key(uint32_t offset) const {
    const uint32_t *record = arena_.data() + offset;
    return {reinterpret_cast<const char *>(record + 2), record[0]};
  }

  void place(Slot slot) {
    size_t mask = slots_.size() - 1;
    size_t i = slot.hash & mask;
    while (slots_[i].offset != 0) i = (i + 1) & mask;
    slots_[i] = slot;
  }

  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.size() * 2, Slot{0, 0});
    for (const Slot &slot : old) {
      if (slot.offset != 0) place(slot);
    }
  }

  std::vector<Slot> slots_;
  std::vector<uint32_t> arena_;
  size_t size_ = 0;
};

struct LineScorer {
  PyObject_HEAD
  lm::base::Model *model;
  WordTable *table;
  // The lines given to the last ``prepare``: their words' record offsets (0: not cached yet),
  // each line's word count, and the words to look up again after ``add``.
  std::vector<uint32_t> *words;
  std::vector<uint32_t> *line_words;
  std::vector<std::pair<size_t, std::string>> *pending;
  Py_ssize_t max_words;
  Py_ssize_t clears;
};

// Calls ``fn(word)`` for each non-empty space-separated word of ``line``.
template <class Fn>
void for_each_word(std::string_view line, Fn &&fn) {
  size_t start = 0;
  while (start < line.size()) {
    size_t end = line.find(' ', start);
    if (end == std::string_view::npos) end = line.size();
    if (end > start) fn(line.substr(start, end - start));
    start = end + 1;
  }
}

// False (with a Python error set) when the object was never initialised.
bool ready(LineScorer *self) {
  if (self->model == nullptr || self->table == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "LineScorer is not initialised (its __init__ failed)");
    return false;
  }
  return true;
}

// The UTF-8 views of a list of str (borrowed from the str objects, valid while the list is).
bool utf8_views(PyObject *list, std::vector<std::string_view> *out) {
  if (!PyList_Check(list)) {
    PyErr_SetString(PyExc_TypeError, "expected a list of str");
    return false;
  }
  Py_ssize_t n = PyList_GET_SIZE(list);
  out->reserve(n);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject *item = PyList_GET_ITEM(list, i);
    if (!PyUnicode_Check(item)) {
      PyErr_Format(PyExc_TypeError, "item %zd is not a str", i);
      return false;
    }
    Py_ssize_t size;
    const char *data = PyUnicode_AsUTF8AndSize(item, &size);
    if (data == nullptr) return false;
    out->emplace_back(data, static_cast<size_t>(size));
  }
  return true;
}

void LineScorer_dealloc(LineScorer *self) {
  delete self->pending;
  delete self->line_words;
  delete self->words;
  delete self->table;
  delete self->model;
  Py_TYPE(self)->tp_free(reinterpret_cast<PyObject *>(self));
}

int LineScorer_init(LineScorer *self, PyObject *args, PyObject *kwargs) {
  static const char *names[] = {"model", "max_words", nullptr};
  const char *path;
  Py_ssize_t max_words = 1 << 19;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|n", const_cast<char **>(names), &path,
                                   &max_words)) {
    return -1;
  }
  lm::ngram::Config config;
  config.load_method = util::POPULATE_OR_LAZY;  // shared page-cache mapping, as in Python
  try {
    self->model = lm::ngram::LoadVirtual(path, config);
  } catch (const std::exception &e) {
    PyErr_Format(PyExc_OSError, "cannot load KenLM model %s: %s", path, e.what());
    return -1;
  }
  self->table = new WordTable();
  self->words = new std::vector<uint32_t>();
  self->line_words = new std::vector<uint32_t>();
  self->pending = new std::vector<std::pair<size_t, std::string>>();
  self->max_words = max_words;
  self->clears = 0;
  return 0;
}

// prepare(lines) -> list[str]: remembers the lines' words for ``score`` and returns the
// distinct ones whose pieces are not cached (to be given to ``add``). A full cache is emptied
// first (the frequent words come back within a batch).
PyObject *LineScorer_prepare(LineScorer *self, PyObject *lines) {
  if (!ready(self)) return nullptr;
  std::vector<std::string_view> views;
  if (!utf8_views(lines, &views)) return nullptr;
  if (static_cast<Py_ssize_t>(self->table->size()) > self->max_words) {
    self->table->clear();
    self->clears += 1;
  }
  self->words->clear();
  self->line_words->clear();
  self->pending->clear();
  std::unordered_set<std::string_view> seen;
  std::vector<std::string_view> missing;
  for (std::string_view line : views) {
    uint32_t count = 0;
    for_each_word(line, [&](std::string_view word) {
      uint32_t offset = self->table->find(word);
      if (offset == 0) {
        self->pending->emplace_back(self->words->size(), std::string(word));
        if (seen.insert(word).second) missing.push_back(word);
      }
      self->words->push_back(offset);
      ++count;
    });
    self->line_words->push_back(count);
  }
  PyObject *out = PyList_New(static_cast<Py_ssize_t>(missing.size()));
  if (out == nullptr) return nullptr;
  for (size_t i = 0; i < missing.size(); ++i) {
    PyObject *word = PyUnicode_DecodeUTF8(missing[i].data(), missing[i].size(), "strict");
    if (word == nullptr) {
      Py_DECREF(out);
      return nullptr;
    }
    PyList_SET_ITEM(out, static_cast<Py_ssize_t>(i), word);
  }
  return out;
}

// add(words, pieces): cache each word's SentencePiece pieces as vocabulary ids.
PyObject *LineScorer_add(LineScorer *self, PyObject *args) {
  if (!ready(self)) return nullptr;
  PyObject *words, *pieces;
  if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &words, &PyList_Type, &pieces)) {
    return nullptr;
  }
  if (PyList_GET_SIZE(words) != PyList_GET_SIZE(pieces)) {
    PyErr_SetString(PyExc_ValueError, "words and pieces differ in length");
    return nullptr;
  }
  std::vector<std::string_view> word_views;
  if (!utf8_views(words, &word_views)) return nullptr;
  const lm::base::Vocabulary &vocab = self->model->BaseVocabulary();
  std::vector<lm::WordIndex> ids;
  for (size_t i = 0; i < word_views.size(); ++i) {
    std::vector<std::string_view> piece_views;
    if (!utf8_views(PyList_GET_ITEM(pieces, static_cast<Py_ssize_t>(i)), &piece_views)) {
      return nullptr;
    }
    ids.clear();
    for (std::string_view piece : piece_views) {
      ids.push_back(vocab.Index(StringPiece(piece.data(), piece.size())));
    }
    self->table->insert(word_views[i], ids);
  }
  Py_RETURN_NONE;
}

// score(lines_per_doc) -> (list[float], list[int]): for the prepared lines, per document, the
// sum over its lines of log10 p(pieces </s> | <s>) (each line summed in float, as kenlm's
// ScoreSentence does, the lines in double) and the count of pieces plus one </s> per line.
PyObject *LineScorer_score(LineScorer *self, PyObject *counts) {
  if (!ready(self)) return nullptr;
  if (!PyList_Check(counts)) {
    PyErr_SetString(PyExc_TypeError, "expected a list of line counts");
    return nullptr;
  }
  Py_ssize_t n_docs = PyList_GET_SIZE(counts);
  std::vector<Py_ssize_t> per_doc(n_docs);
  size_t total = 0;
  for (Py_ssize_t d = 0; d < n_docs; ++d) {
    per_doc[d] = PyLong_AsSsize_t(PyList_GET_ITEM(counts, d));
    if (per_doc[d] < 0) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "negative line count");
      return nullptr;
    }
    total += static_cast<size_t>(per_doc[d]);
  }
  if (total != self->line_words->size()) {
    PyErr_SetString(PyExc_ValueError, "line counts do not match the prepared lines");
    return nullptr;
  }
  std::vector<uint32_t> &words = *self->words;
  for (const auto &[at, word] : *self->pending) {
    words[at] = self->table->find(word);
    if (words[at] == 0) {
      PyErr_Format(PyExc_KeyError, "word not cached: %.200s", word.c_str());
      return nullptr;
    }
  }
  self->pending->clear();
  std::vector<double> log10_sums(n_docs, 0.0);
  std::vector<long long> tokens(n_docs, 0);
  Py_BEGIN_ALLOW_THREADS
  const lm::base::Model &model = *self->model;
  const WordTable &table = *self->table;
  const lm::WordIndex end_sentence = model.BaseVocabulary().EndSentence();
  const uint32_t *line_words = self->line_words->data();
  const uint32_t *word = words.data();
  lm::ngram::State states[2];
  for (Py_ssize_t d = 0; d < n_docs; ++d) {
    for (Py_ssize_t k = 0; k < per_doc[d]; ++k) {
      lm::ngram::State *state = &states[0], *next = &states[1];
      model.BeginSentenceWrite(state);
      float line_sum = 0.0f;  // float, as kenlm's ScoreSentence accumulates
      long long count = 1;    // </s>
      for (uint32_t w = *line_words++; w > 0; --w) {
        auto [ids, n] = table.ids(*word++);
        for (uint32_t j = 0; j < n; ++j) {
          line_sum += model.BaseScore(state, ids[j], next);
          std::swap(state, next);
        }
        count += n;
      }
      line_sum += model.BaseScore(state, end_sentence, next);
      log10_sums[d] += line_sum;  // double, as the Python loop summed the floats
      tokens[d] += count;
    }
  }
  Py_END_ALLOW_THREADS
  self->words->clear();
  self->line_words->clear();
  PyObject *sums_out = PyList_New(n_docs);
  PyObject *tokens_out = PyList_New(n_docs);
  if (sums_out == nullptr || tokens_out == nullptr) {
    Py_XDECREF(sums_out);
    Py_XDECREF(tokens_out);
    return nullptr;
  }
  for (Py_ssize_t d = 0; d < n_docs; ++d) {
    PyList_SET_ITEM(sums_out, d, PyFloat_FromDouble(log10_sums[d]));
    PyList_SET_ITEM(tokens_out, d, PyLong_FromLongLong(tokens[d]));
  }
  return Py_BuildValue("(NN)", sums_out, tokens_out);
}

PyObject *LineScorer_stats(LineScorer *self, PyObject *) {
  if (!ready(self)) return nullptr;
  return Py_BuildValue("{s:n,s:n,s:n}", "cached_words",
                       static_cast<Py_ssize_t>(self->table->size()), "max_words",
                       self->max_words, "clears", self->clears);
}

PyMethodDef LineScorer_methods[] = {
    {"prepare", reinterpret_cast<PyCFunction>(LineScorer_prepare), METH_O,
     "prepare(lines) -> distinct words without cached pieces"},
    {"add", reinterpret_cast<PyCFunction>(LineScorer_add), METH_VARARGS,
     "add(words, pieces): cache each word's SentencePiece pieces"},
    {"score", reinterpret_cast<PyCFunction>(LineScorer_score), METH_O,
     "score(lines_per_doc) -> (log10 sums, token counts) per document, prepared lines"},
    {"stats", reinterpret_cast<PyCFunction>(LineScorer_stats), METH_NOARGS,
     "cache size, limit and how often it was emptied"},
    {nullptr, nullptr, 0, nullptr}};

PyTypeObject LineScorerType = {PyVarObject_HEAD_INIT(nullptr, 0)};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_kenlm_lines",
                          "KenLM line scoring from cached word pieces.", -1, nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__kenlm_lines(void) {
  LineScorerType.tp_name = "_kenlm_lines.LineScorer";
  LineScorerType.tp_basicsize = sizeof(LineScorer);
  LineScorerType.tp_flags = Py_TPFLAGS_DEFAULT;
  LineScorerType.tp_doc = "LineScorer(model, max_words=524288)";
  LineScorerType.tp_new = PyType_GenericNew;
  LineScorerType.tp_init = reinterpret_cast<initproc>(LineScorer_init);
  LineScorerType.tp_dealloc = reinterpret_cast<destructor>(LineScorer_dealloc);
  LineScorerType.tp_methods = LineScorer_methods;
  if (PyType_Ready(&LineScorerType) < 0) return nullptr;
  PyObject *module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  Py_INCREF(&LineScorerType);
  if (PyModule_AddObject(module, "LineScorer", reinterpret_cast<PyObject *>(&LineScorerType)) <
      0) {
    Py_DECREF(&LineScorerType);
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
