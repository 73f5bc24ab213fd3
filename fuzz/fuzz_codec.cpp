// Fuzzes wire::decode over nested standard and user types. Whatever the bytes, decode either
// returns a value or throws protocol_error; a value that decodes must encode and decode back to
// an equal value.
#include "codec_types.hpp"

#include <parafork/error.hpp>
#include <parafork/wire/codec.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "fuzz_codec: %s\n", what);
    std::abort();
}

template <class T> void round_trip(std::string_view in, bool canonical) {
    namespace wire = parafork::wire;
    T value;
    try {
        value = wire::decode<T>(in);
    } catch (const parafork::protocol_error&) {
        return; // corrupt input, rejected: the only allowed failure
    }
    const std::string again = wire::encode(value);
    T back;
    try {
        back = wire::decode<T>(again);
    } catch (const parafork::protocol_error&) {
        fail("a re-encoded value does not decode");
    }
    if (!(back == value)) fail("a value does not survive encode/decode");
    // Without hash containers an encoding is a function of the value alone.
    if (canonical && wire::encode(back) != again) fail("equal values encode differently");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace parafork_fuzz;
    if (size < 1) return 0;
    const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (static_cast<codec_case>(data[0] % static_cast<std::uint8_t>(codec_case::count))) {
        case codec_case::nested_map: round_trip<nested_map>(in, true); break;
        case codec_case::record: round_trip<record>(in, true); break;
        case codec_case::record_tuple: round_trip<record_tuple>(in, false); break;
        case codec_case::assorted: round_trip<assorted>(in, true); break;
        case codec_case::count: break;
    }
    return 0;
}
