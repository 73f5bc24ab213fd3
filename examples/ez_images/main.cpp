// An image pipeline on synthetic pictures: generate -> resize (the slow step, so three
// processes share it) -> enhance -> watermark -> save. The file name travels in meta().
#include <parafork/exec/pipeline/pipeline.hpp>
#include <parafork/exec/pipeline/stages.hpp>

#include <cstdint>
#include <cstdio>
#include <set>
#include <stdexcept>
#include <vector>

namespace pf = parafork;

struct image {
    int w = 0, h = 0;
    std::vector<std::uint8_t> px;  // RGB
    template <class A>
    void serialize(A& ar) {
        ar(w, h, px);
    }
};

struct ImgFiles : pf::stage<image> {
    int count;
    explicit ImgFiles(int n) : count(n) {}
    void setup() {
        for (int i = 0; i < count; ++i) {
            image im{640, 480, std::vector<std::uint8_t>(640 * 480 * 3)};
            for (std::size_t k = 0; k < im.px.size(); ++k) im.px[k] = static_cast<std::uint8_t>(k * 7 + i);
            meta()["fname"] = "pic" + std::to_string(i) + ".ppm";
            put(im);
        }
        stop();
    }
};

image resize(image in) {  // halve each side by averaging 2x2 blocks
    image out{in.w / 2, in.h / 2, {}};
    out.px.resize(static_cast<std::size_t>(out.w * out.h * 3));
    for (int y = 0; y < out.h; ++y)
        for (int x = 0; x < out.w; ++x)
            for (int c = 0; c < 3; ++c) {
                auto at = [&](int yy, int xx) { return in.px[static_cast<std::size_t>((yy * in.w + xx) * 3 + c)]; };
                int sum = at(2 * y, 2 * x) + at(2 * y + 1, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x + 1);
                out.px[static_cast<std::size_t>((y * out.w + x) * 3 + c)] = static_cast<std::uint8_t>(sum / 4);
            }
    return out;
}

image enhance(image im) {
    for (auto& p : im.px) p = static_cast<std::uint8_t>(p < 128 ? p * 3 / 4 : 255 - (255 - p) * 3 / 4);
    return im;
}

image watermark(image im) {
    for (int x = 0; x < im.w; ++x) im.px[static_cast<std::size_t>(x * 3)] = 255;  // a red top line
    return im;
}

// "Saves" each picture (prints its checksum) and puts the path it would have written.
struct SaveTo : pf::stage<std::string> {
    std::string dir;
    explicit SaveTo(std::string d) : dir(std::move(d)) {}
    void process(const image& im) {
        unsigned sum = 0;
        for (auto p : im.px) sum = sum * 31 + p;
        std::string path = dir + "/" + meta().at("fname");
        std::printf("%s %dx%d checksum %08x\n", path.c_str(), im.w, im.h, sum);
        if (im.w != 320 || im.h != 240 || im.px[0] != 255) throw std::runtime_error(path + ": not processed");
        put(path);
    }
};

int main() {
    auto p = pf::ez(ImgFiles(12), pf::workers(3, pf::named("resize", resize)), pf::named("enhance", enhance),
                    pf::named("watermark", watermark), SaveTo("site_pics"));
    p.print_layout();
    auto saved = p.list();
    std::set<std::string> names(saved.begin(), saved.end());
    return saved.size() == 12 && names.size() == 12 && names.count("site_pics/pic11.ppm") == 1 ? 0 : 1;
}
