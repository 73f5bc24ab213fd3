// Large results without a copy: a task returns a shared_array made in the worker, and the
// parent receives the same memory (its descriptor travels beside the answer). Here each task
// renders a band of a Mandelbrot image; the bands come back as they are, not as bytes.
#include <parafork/exec/pool/pool.hpp>
#include <parafork/ipc/shared_array.hpp>

#include <cstdio>
#include <vector>

namespace pf = parafork;

constexpr int width = 1200, height = 800, bands = 8;

// Rows [band * height / bands, ...) of the image: iterations to escape, at most 255.
pf::shared_array<unsigned char> render(int band) {
    const int rows = height / bands;
    pf::shared_array<unsigned char> out({static_cast<std::size_t>(rows), std::size_t{width}});
    for (int y = 0; y < rows; ++y)
        for (int x = 0; x < width; ++x) {
            double cr = -2.2 + 3.2 * x / width, ci = -1.2 + 2.4 * (band * rows + y) / height;
            double zr = 0, zi = 0;
            int k = 0;
            for (; k < 255 && zr * zr + zi * zi < 4; ++k) {
                double t = zr * zr - zi * zi + cr;
                zi = 2 * zr * zi + ci;
                zr = t;
            }
            out(y, x) = static_cast<unsigned char>(k);
        }
    return out;
}

int main() {
    pf::pool p;
    std::vector<int> which;
    for (int b = 0; b < bands; ++b) which.push_back(b);
    auto parts = p.map(&render, which);  // each one the worker's own memory, mapped here

    // Check a few pixels against a render in this process.
    bool ok = parts.size() == bands;
    for (int b : {0, 3, 7}) {
        auto mine = render(b);
        for (std::size_t i = 0; ok && i < mine.size(); i += 997) ok = parts[b][i] == mine[i];
    }
    long inside = 0;
    for (auto& part : parts)
        for (unsigned char k : part) inside += k == 255;
    std::printf("%d bands of %zux%zu, %ld points inside the set\n", bands, parts[0].extent(0),
                parts[0].extent(1), inside);
    if (!ok) std::fprintf(stderr, "pool_shared_result: bands differ from a local render\n");
    return ok ? 0 : 1;
}
