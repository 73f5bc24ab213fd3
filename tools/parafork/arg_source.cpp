#include "sources.hpp"

#include <parafork/sys/fd.hpp>

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <limits>
#include <map>
#include <poll.h>
#include <random>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace parafork::cli {
namespace {

constexpr std::string_view blanks = " \t\n\r\f\v";

// The options that need every job made before the first starts: --shuf, and the number of
// jobs for --halt N%, --eta and --bar.
bool reads_all_first(const settings& s) { return s.shuffle || s.halt.percent || s.eta || s.bar; }

// One value as the job's arguments: cut at every --colsep match (empty fields kept; a match
// of nothing cuts nothing), each piece trimmed as --trim says.
job_args split_value(std::string value, const input_settings& in) {
    job_args out;
    if (!in.colsep) {
        out.push_back(std::move(value));
    } else {
        auto field = value.cbegin(), pos = field, end = value.cend();
        auto flags = std::regex_constants::match_default;
        std::smatch m;
        while (pos != end && std::regex_search(pos, end, m, *in.colsep, flags)) {
            flags |= std::regex_constants::match_prev_avail;
            if (m.length(0) == 0) {
                if (m[0].first == end) break;
                pos = m[0].first + 1;
                continue;
            }
            out.emplace_back(field, m[0].first);
            field = pos = m[0].second;
        }
        out.emplace_back(field, end);
    }
    for (auto& v : out) {
        if (in.trim_right) v.erase(v.find_last_not_of(blanks) + 1);
        if (in.trim_left) v.erase(0, std::min(v.size(), v.find_first_not_of(blanks)));
    }
    return out;
}

// -m, -X: the values divided evenly among the job slots, at most -N/-n/-L of them when given.
std::size_t spread_per_job(std::size_t rows, const settings& s) {
    std::size_t per = std::max<std::size_t>(1, (rows + s.jobs - 1) / s.jobs);
    return s.batch.max_args ? std::min(per, s.batch.max_args) : per;
}

} // namespace

// ---- record_reader ---------------------------------------------------------------------------

record_reader::record_reader(const std::string& path, const input_settings& in) : in_(in) {
    if (path != "-") {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw std::system_error(errno, std::generic_category(), "cannot open input file '" + path + "'");
        owned_.reset(fd);
        fd_ = fd;
    }
    struct stat st {};
    if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t at = ::lseek(fd_, 0, SEEK_CUR);
        if (at >= 0 && at <= st.st_size) total_ = static_cast<std::size_t>(st.st_size - at);
    }
}

// -L: a value ending in a blank is continued by the next one (GNU parallel's, and xargs's, rule).
static bool continues(const std::string& value, const input_settings& in) {
    return in.continue_lines && !value.empty() && (value.back() == ' ' || value.back() == '\t');
}

void record_reader::add(std::string record, std::deque<std::string>& out) {
    if (continues(record, in_)) {
        continued_ += record;
        return;
    }
    if (!continued_.empty()) record = std::exchange(continued_, {}) + record;
    if (in_.eof && record == *in_.eof) {
        eof_ = true;  // -E: the rest of this input is not read
        pending_.clear();
        return;
    }
    out.push_back(std::move(record));
}

bool record_reader::read_some(std::deque<std::string>& out) {
    if (eof_) return true;
    char buf[64 * 1024];
    long n;
    do {
        n = ::read(fd_, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN) return false;
        sys::throw_errno("read input");
    }
    if (n == 0) {
        if (!pending_.empty()) add(std::move(pending_), out);
        pending_.clear();
        if (!eof_ && !continued_.empty()) out.push_back(std::move(continued_));  // a last line ending in a blank
        eof_ = true;
        return true;
    }
    bytes_read_ += static_cast<std::size_t>(n);
    const std::string& d = in_.delimiter;
    // A delimiter of several bytes may straddle two reads: look again at the old tail.
    std::size_t scan = pending_.size() >= d.size() ? pending_.size() - d.size() + 1 : 0, start = 0;
    pending_.append(buf, static_cast<std::size_t>(n));
    for (std::size_t at; (at = pending_.find(d, scan)) != std::string::npos;) {
        add(pending_.substr(start, at - start), out);
        if (eof_) return true;
        start = scan = at + d.size();
    }
    pending_.erase(0, start);
    return true;
}

void record_reader::read_until(std::deque<std::string>& out, std::size_t count) {
    while (!eof_ && out.size() < count)
        if (!read_some(out)) {  // a non-blocking stdin with nothing yet: wait for it
            pollfd p{fd_, POLLIN, 0};
            while (::poll(&p, 1, -1) < 0 && errno == EINTR) {}
        }
}

// ---- arg_source ------------------------------------------------------------------------------

// Sources that advance together: ":::+" links a source to the one before (the shortest ends
// the group), --link links them all (the shorter ones wrap around), as GNU parallel.
struct arg_source::group {
    std::vector<std::vector<job_args>> sources;
    bool wrap = false;

    std::size_t rows() const {
        std::size_t least = std::numeric_limits<std::size_t>::max(), most = 0;
        for (auto& s : sources) least = std::min(least, s.size()), most = std::max(most, s.size());
        return least == 0 ? 0 : wrap ? most : least;
    }
    void append_row(std::size_t i, job_args& out) const {
        for (auto& s : sources) {
            auto& row = s[i % s.size()];
            out.insert(out.end(), row.begin(), row.end());
        }
    }
};

arg_source::~arg_source() = default;

arg_source::arg_source(const settings& s) : s_(s) {
    const input_settings& in = s.input;
    std::vector<input_source> sources = in.sources;
    if (sources.empty()) sources.push_back(input_source::file("-"));
    auto joins_previous = [&](std::size_t i) { return i > 0 && (in.link || sources[i].linked); };

    // --header : the first value of each source names its columns, numbered across sources.
    std::map<std::string, std::size_t> columns;
    std::size_t position = 0;
    auto take_header = [&](std::deque<std::string>& values) {
        if (!in.header || values.empty()) return;
        for (auto& name : split_value(std::move(values.front()), in)) {
            columns.emplace(name, ++position);
            column_names_.resize(position);
            column_names_[position - 1] = name;
        }
        values.pop_front();
    };

    for (std::size_t i = 0; i < sources.size(); ++i) {
        std::deque<std::string> values;
        // --halt N% needs the number of jobs: everything is read first then.
        if (i == 0 && sources[0].path && !(sources.size() > 1 && joins_previous(1)) && !reads_all_first(s)) {
            stream_.emplace(*sources[0].path, in);
            if (in.header) stream_->read_until(streamed_, 1);
            take_header(streamed_);
            continue;
        }
        if (sources[i].path) {
            record_reader(*sources[i].path, in).read_until(values, std::numeric_limits<std::size_t>::max());
        } else {
            std::string continued;
            for (auto& given : sources[i].values) {
                if (continues(given, in)) {
                    continued += given;
                    continue;
                }
                std::string v = std::exchange(continued, {}) + given;
                if (in.eof && v == *in.eof) break;
                values.push_back(std::move(v));
            }
            if (!continued.empty() && !(in.eof && continued == *in.eof)) values.push_back(std::move(continued));
        }
        take_header(values);
        std::vector<job_args> rows;
        rows.reserve(values.size());
        for (auto& v : values) rows.push_back(split_value(std::move(v), in));
        if (!joins_previous(i) || groups_.empty()) groups_.emplace_back();
        groups_.back().wrap = in.link;
        groups_.back().sources.push_back(std::move(rows));
    }
    odometer_.assign(groups_.size(), 0);
    for (std::size_t k = stream_ ? 0 : 1; k < groups_.size(); ++k)
        if (groups_[k].rows() == 0) empty_ = true;
    if (s.shuffle) {  // every combination made, then shuffled (GNU parallel's --shuf)
        std::vector<job_args> rows;
        for (job_args row; next_row(row);) rows.push_back(std::move(row));
        std::mt19937_64 random{std::random_device{}()};
        std::shuffle(rows.begin(), rows.end(), random);
        shuffled_.emplace(std::make_move_iterator(rows.begin()), std::make_move_iterator(rows.end()));
    }
    template_ = std::make_unique<command_template>(
        s.command, s.names, columns, template_options{.context_replace = s.batch.context_replace, .no_shell = s.no_shell, .words_are_args = s.words_are_args, .values_are_commands = s.values_are_commands});
    if (s.tagstring)
        tag_template_ = std::make_unique<command_template>(std::vector<std::string>{*s.tagstring}, s.names, columns,
                                                           template_options{.no_shell = true});
    per_job_ = s.batch.spread ? 0 : s.batch.max_args ? s.batch.max_args : std::numeric_limits<std::size_t>::max();
    if (!stream_ && !(s.batch.by_bytes && !s.batch.spread)) {  // --xargs cuts by bytes: unknown
        std::size_t rows = rows_left();
        if (s.batch.spread) {  // full jobs of -N values while more are left, then one per slot
            std::size_t full = s.batch.max_args && rows > s.batch.max_args ? (rows - 1) / s.batch.max_args : 0;
            std::size_t left = rows - full * s.batch.max_args, per = spread_per_job(left, s);
            jobs_total_ = full + (left + per - 1) / per;  // more when the values overflow a command line
        } else {
            jobs_total_ = (rows + s.batch.max_args - 1) / s.batch.max_args;
        }
    }
    read_ahead_ = s.batch.spread ? std::numeric_limits<std::size_t>::max()
                                 : std::size_t{s.jobs} * std::clamp<std::size_t>(s.batch.max_args, 1, 1024);
}

void arg_source::read_input() { stream_->read_some(streamed_); }

// The first group's next row, from the stream or from the values read whole.
bool arg_source::next_first_row() {
    if (stream_) {
        if (streamed_.empty()) return false;
        first_ = split_value(std::move(streamed_.front()), s_.input);
        streamed_.pop_front();
        return true;
    }
    if (groups_.empty() || next_row_ >= groups_[0].rows()) return false;
    first_.emplace();
    groups_[0].append_row(next_row_++, *first_);
    return true;
}

bool arg_source::rows_exhausted() const {
    if (shuffled_) return shuffled_->empty();
    if (empty_) return true;
    if (first_) return false;
    if (stream_) return stream_->eof() && streamed_.empty();
    return groups_.empty() || next_row_ >= groups_[0].rows();
}

bool arg_source::exhausted() const { return rows_exhausted() && batch_.empty() && !held_; }

std::size_t arg_source::rows_left() const {
    if (shuffled_) return shuffled_->size();
    if (empty_) return 0;
    std::size_t n = stream_ ? streamed_.size() : groups_.empty() ? 0 : groups_[0].rows();
    for (std::size_t k = stream_ ? 0 : 1; k < groups_.size(); ++k) n *= groups_[k].rows();
    return n;
}

bool arg_source::next_row(job_args& out) {
    if (shuffled_) {
        if (shuffled_->empty()) return false;
        out = std::move(shuffled_->front());
        shuffled_->pop_front();
        return true;
    }
    if (empty_ || (!first_ && !next_first_row())) return false;
    out = *first_;
    const std::size_t later = stream_ ? 0 : 1;  // the groups combined with each first row
    for (std::size_t k = later; k < groups_.size(); ++k) groups_[k].append_row(odometer_[k], out);
    // The last group varies fastest; when every one has wrapped, the next first row is due.
    for (std::size_t k = groups_.size();;) {
        if (k == later) {
            first_.reset();
            break;
        }
        --k;
        if (++odometer_[k] < groups_[k].rows()) break;
        odometer_[k] = 0;
    }
    return true;
}

std::optional<job_spec> arg_source::take(std::size_t slot) {
    const batching& b = s_.batch;
    if (per_job_ == 0) {  // -m, -X: all the values are read first, to know what is left
        if (stream_ && !stream_->eof()) return std::nullopt;
        per_job_ = b.max_args ? b.max_args : std::numeric_limits<std::size_t>::max();
        spreading_ = true;
    }
    // Fill the job: per_job_ values, fewer when a command line is full (--xargs, -m, -X) or
    // the input has ended.
    bool full = false;
    while (!full && batch_.size() < per_job_) {
        if (!held_) {
            held_.emplace();
            if (!next_row(*held_)) {
                held_.reset();
                break;
            }
        }
        std::size_t bytes = 0;
        for (auto& v : *held_) bytes += (template_->uses_shell() ? shell_word_size(v) : v.size()) + 1;
        if (b.by_bytes && !batch_.empty() && batch_bytes_ + bytes > b.max_line) {
            full = true;
            break;
        }
        batch_bytes_ += bytes;
        batch_.push_back(std::move(*held_));
        held_.reset();
    }
    if (batch_.empty() || (!full && batch_.size() < per_job_ && !rows_exhausted())) return std::nullopt;
    // -m, -X as GNU parallel: full jobs while the values left fill more than one, then what is
    // left divided evenly among the job slots.
    if (spreading_ && !full && !held_ && rows_exhausted()) {
        per_job_ = spread_per_job(batch_.size(), s_);
        spreading_ = false;
    }
    std::size_t rows = std::min(batch_.size(), per_job_);
    job_args args;
    for (std::size_t r = 0; r < rows; ++r)
        args.insert(args.end(), std::make_move_iterator(batch_[r].begin()), std::make_move_iterator(batch_[r].end()));
    batch_.erase(batch_.begin(), batch_.begin() + static_cast<std::ptrdiff_t>(rows));
    batch_bytes_ = 0;  // what is left of the batch fits a job: it is not filled again
    std::size_t seq = ++taken_;
    job_spec spec;
    spec.argv = template_->expand(args, seq, slot);
    std::string shown;
    for (auto& a : args) shown += (shown.empty() ? "" : " ") + a;
    if (tag_template_ && tag_template_->has_replacements()) {
        for (auto& word : tag_template_->expand(args, seq, slot)) spec.tag += (spec.tag.empty() ? "" : " ") + word;
        spec.tag += '\t';
    } else if (tag_template_) {
        spec.tag = *s_.tagstring + '\t';
    } else if (s_.tag) {
        spec.tag = shown + '\t';
    }
    if (s_.dry_run || s_.verbose || s_.verbose_stderr) spec.shown = template_->shown(args, seq, slot);
    if (!s_.results.empty()) {
        // GNU parallel's layout: DIR/1/<first value>/2/<second value>/..., a source named by
        // its header when it has one; in a value a backslash is doubled and "/" becomes "\_".
        spec.results_dir = s_.results;
        for (std::size_t k = 0; k < args.size(); ++k) {
            spec.results_dir += '/';
            spec.results_dir += k < column_names_.size() ? column_names_[k] : std::to_string(k + 1);
            spec.results_dir += '/';
            for (char c : args[k]) spec.results_dir += c == '/' ? "\\_" : c == '\\' ? "\\\\" : std::string(1, c);
        }
    }
    spec.values = shown;
    if (shown.size() > 60) shown = shown.substr(0, 57) + "...";
    bool lines = stream_ && groups_.empty() && s_.input.delimiter == "\n" && !s_.input.colsep;
    spec.what = (lines ? "line " : "record ") + std::to_string(seq) + " '" + shown + "'";
    return spec;
}

} // namespace parafork::cli
