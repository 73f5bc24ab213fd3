// Functions by name across ranks: a code address to (build-id, offset) and back, in one process
// (no mpirun needed: every rank runs the same binary, so the round trip is the same there).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include <parafork/mpi/world.hpp>

namespace {
int some_function(int x) { return x + 1; }
}

using parafork::mpi::detail::from_code_ref;
using parafork::mpi::detail::to_code_ref;

TEST(MPICodeRef, RoundTripsToTheSameAddress) {
    const void* fn = reinterpret_cast<const void*>(&some_function);
    const auto ref = to_code_ref(fn);
    EXPECT_FALSE(ref.build_id.empty());
    EXPECT_EQ(from_code_ref(ref), fn);
}

TEST(MPICodeRef, CodeInASharedLibraryToo) {
    // libc's (or, under ASan, the sanitizer runtime's interceptor): a shared object with its
    // own build-id.
    const void* fn = reinterpret_cast<const void*>(&::strlen);
    const auto ref = to_code_ref(fn);
    EXPECT_NE(ref.object.find(".so"), std::string::npos) << ref.object;
    EXPECT_NE(ref.build_id, to_code_ref(reinterpret_cast<const void*>(&some_function)).build_id);
    EXPECT_EQ(from_code_ref(ref), fn);
}

TEST(MPICodeRef, AnotherBuildIsNotFound) {
    auto ref = to_code_ref(reinterpret_cast<const void*>(&some_function));
    ref.build_id[0] = ref.build_id[0] == '0' ? '1' : '0';
    EXPECT_EQ(from_code_ref(ref), nullptr);
    ref.build_id.clear();
    EXPECT_EQ(from_code_ref(ref), nullptr);
}

TEST(MPICodeRef, AnOffsetOutsideTheCodeIsNotFound) {
    auto ref = to_code_ref(reinterpret_cast<const void*>(&some_function));
    ref.offset = std::uint64_t{1} << 40;
    EXPECT_EQ(from_code_ref(ref), nullptr);
}

TEST(MPICodeRef, DataIsNoCodeAndThrows) {
    auto heap = std::make_unique<int>(5);
    EXPECT_THROW(to_code_ref(heap.get()), parafork::error);
}
