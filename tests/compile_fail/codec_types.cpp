// Values that mean nothing in another process, or whose bytes cannot be checked, must not
// encode. Built by ctest with one of the macros below; each failing case must stop at the
// codec's static_assert (the test matches its message); the control case must compile.
#include <parafork/wire/codec.hpp>

#include <span>

namespace wire = parafork::wire;

namespace {

struct holds_pointer {
    int n;
    const char* name;
};
struct holds_span {
    std::span<const int> values;
};
enum unfixed { first, second };
class closed {  // trivially copyable, but the codec cannot see its fields
public:
    explicit closed(int v) : v_(v) {}

private:
    int v_;
};
struct plain {
    int a[4];
    bool b;
};

} // namespace

void build() {
#if defined(PARAFORK_CF_CONTROL)
    (void)wire::decode<plain>(wire::encode(plain{{1, 2, 3, 4}, true}));
#elif defined(PARAFORK_CF_POINTER)
    (void)wire::encode(static_cast<const int*>(nullptr));
#elif defined(PARAFORK_CF_POINTER_FIELD)
    (void)wire::encode(holds_pointer{1, "x"});
#elif defined(PARAFORK_CF_SPAN)
    int xs[] = {1, 2};
    (void)wire::encode(std::span<const int>(xs));
#elif defined(PARAFORK_CF_SPAN_FIELD)
    int xs[] = {1, 2};
    (void)wire::encode(holds_span{xs});
#elif defined(PARAFORK_CF_UNFIXED_ENUM)
    (void)wire::decode<unfixed>(wire::encode(0));
#elif defined(PARAFORK_CF_CLOSED_CLASS)
    (void)wire::encode(closed(1));
#endif
}
