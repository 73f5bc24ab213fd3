#include <parafork/error.hpp>
#include <parafork/sys/fd.hpp>
#include <parafork/wire/frames.hpp>

#include <gtest/gtest.h>

#include "support/leak_check.hpp"

#include <random>
#include <string>
#include <vector>

namespace frames = parafork::frames;

namespace {

std::vector<frames::framing> all_framings(std::size_t fixed_n) {
    return {frames::lines, frames::zero_term, frames::len_prefix, frames::fixed_size(fixed_n), frames::delimited(',')};
}

std::string payload_for(const frames::framing& f, std::size_t n, unsigned seed) {
    std::string s(n, 'a');
    std::mt19937 rng(seed);
    for (auto& c : s) {
        c = static_cast<char>(rng() % 256);
        if (f.is_delimited() && c == f.delimiter()) c = c == 'd' ? 'e' : 'd';
    }
    return s;
}

} // namespace

TEST(Frames, RoundTripEverySizeEveryFraming) {
    for (std::size_t n : {1, 2, 7, 4095, 4096, 4097, 65536}) {
        for (auto f : all_framings(n)) {
            std::vector<std::string> msgs;
            std::string stream;
            for (unsigned i = 0; i < 3; ++i) {
                msgs.push_back(payload_for(f, n, i));
                f.append(stream, msgs.back());
            }
            frames::frame_reader r(f, 64);
            r.feed(stream);  // many frames in one read
            for (auto& m : msgs) {
                auto got = r.next();
                ASSERT_TRUE(got) << f.name() << " " << n;
                EXPECT_EQ(*got, m);
            }
            EXPECT_FALSE(r.next());
            EXPECT_FALSE(r.finish());
        }
    }
}

TEST(Frames, OneByteAtATime) {
    for (auto f : all_framings(5)) {
        std::vector<std::string> msgs;
        std::string stream;
        for (unsigned i = 0; i < 20; ++i) {
            msgs.push_back(payload_for(f, f.type == frames::kind::fixed ? 5 : i * 3, i));
            f.append(stream, msgs.back());
        }
        frames::frame_reader r(f, 64);
        std::vector<std::string> got;
        for (char c : stream) {
            r.feed(std::string_view(&c, 1));
            while (auto m = r.next()) got.emplace_back(*m);
        }
        EXPECT_EQ(got, msgs) << f.name();
    }
}

TEST(Frames, EmptyPayloads) {
    for (auto f : {frames::lines, frames::zero_term, frames::len_prefix}) {
        frames::frame_reader r(f);
        r.feed(f.frame("") + f.frame("") + f.frame("x"));
        EXPECT_EQ(*r.next(), "");
        EXPECT_EQ(*r.next(), "");
        EXPECT_EQ(*r.next(), "x");
    }
}

TEST(Frames, OverMaxFrameThrowsBothWays) {
    auto f = frames::len_prefix.with_max_frame(100);
    EXPECT_THROW(f.frame(std::string(101, 'x')), parafork::protocol_error);
    EXPECT_NO_THROW(f.frame(std::string(100, 'x')));
    frames::frame_reader r(f);
    r.feed(frames::len_prefix.frame(std::string(101, 'x')).substr(0, 8));  // header alone suffices
    EXPECT_THROW(r.next(), parafork::protocol_error);

    auto l = frames::lines.with_max_frame(10);
    frames::frame_reader lr(l);
    lr.feed(std::string(11, 'y'));  // no newline yet, already too long
    EXPECT_THROW(lr.next(), parafork::protocol_error);
    EXPECT_THROW(frames::fixed_size(20).with_max_frame(10).frame(std::string(20, 'z')),
                 parafork::protocol_error);
}

TEST(Frames, BadPayloadsAreRefused) {
    EXPECT_THROW(frames::lines.frame("a\nb"), parafork::protocol_error);
    EXPECT_THROW(frames::zero_term.frame(std::string("a\0b", 3)), parafork::protocol_error);
    EXPECT_THROW(frames::fixed<4>.frame("abc"), parafork::protocol_error);
    EXPECT_THROW(frames::delimited(',').frame("a,b"), parafork::protocol_error);
    EXPECT_EQ(frames::delimited(',').frame("a\nb"), "a\nb,");  // only its own byte ends a frame
    EXPECT_THROW(frames::frame_reader(frames::fixed_size(0)), std::invalid_argument);
}

TEST(Frames, FinishAtEof) {
    frames::frame_reader lr(frames::lines);
    lr.feed("a\nlast");
    EXPECT_EQ(*lr.next(), "a");
    EXPECT_FALSE(lr.next());
    EXPECT_EQ(*lr.finish(), "last");  // an unterminated last line is a record, as in text tools

    frames::frame_reader cr(frames::delimited('\x1e'));
    cr.feed("a\nb\x1e\x1elast");
    EXPECT_EQ(*cr.next(), "a\nb");
    EXPECT_EQ(*cr.next(), "");
    EXPECT_FALSE(cr.next());
    EXPECT_EQ(*cr.finish(), "last");

    frames::frame_reader pr(frames::len_prefix);
    pr.feed(frames::len_prefix.frame("whole").substr(0, 10));
    EXPECT_FALSE(pr.next());
    EXPECT_THROW(pr.finish(), parafork::protocol_error);  // a truncated frame is corruption
}

TEST(Frames, FillFromPipeLargeFrame) {
    PARAFORK_LEAK_CHECK();
    auto p = parafork::sys::make_pipe();
    std::string big(1 << 20, 'q');
    std::string framed = frames::len_prefix.frame(big);
    // Write in pieces interleaved with reads, as a real peer would.
    frames::frame_reader r(frames::len_prefix, 64);
    std::size_t off = 0;
    std::optional<std::string_view> got;
    while (!got) {
        if (off < framed.size()) {
            std::size_t n = std::min<std::size_t>(32768, framed.size() - off);
            parafork::sys::write_all(p.write.get(), framed.data() + off, n);
            off += n;
        }
        ASSERT_GT(r.fill(p.read.get()), 0);
        got = r.next();
    }
    EXPECT_EQ(got->size(), big.size());
    EXPECT_EQ(*got, big);
    // Grown with what arrived: no more than twice the frame, not one allocation per announcement.
    EXPECT_LE(r.capacity(), 4 * framed.size());
}

TEST(Frames, CorruptHeaderDoesNotAllocateWhatItAnnounces) {
    PARAFORK_LEAK_CHECK();
    // A header just under max_frame, then EOF: a truncated frame, found without reserving the
    // gigabyte the header claims.
    auto p = parafork::sys::make_pipe();
    std::uint64_t announced = frames::default_max_frame - 1;
    parafork::sys::write_all(p.write.get(), &announced, sizeof announced);
    parafork::sys::write_all(p.write.get(), "abc", 3);
    p.write.reset();
    frames::frame_reader r(frames::len_prefix);
    EXPECT_EQ(r.fill(p.read.get()), 11);
    EXPECT_FALSE(r.next());
    EXPECT_EQ(r.fill(p.read.get()), 0);
    EXPECT_LT(r.capacity(), std::size_t{1} << 20);
    EXPECT_THROW(r.finish(), parafork::protocol_error);
}

TEST(Frames, OverMaxRecordWithItsDelimiterInTheSameRead) {
    for (auto f : {frames::lines.with_max_frame(4), frames::zero_term.with_max_frame(4)}) {
        frames::frame_reader r(f);
        r.feed(f.type == frames::kind::lines ? std::string("toolong\n") : std::string("toolong\0", 8));
        EXPECT_THROW(r.next(), parafork::protocol_error) << f.name();
    }
}
