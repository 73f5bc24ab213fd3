// Shared memory made by the frontend before the fork (tutorial part I.4: shm1.py).
// A shared_array member of the actor is shared by fork itself: no names, nothing to mirror,
// nothing left in /dev/shm. pre_run / post_run run in the backend around its loop: the place
// for what must not be forked (devices, threads, models). Exits 1 if the frontend does not see
// what the backend drew.
#include <parafork/exec/process/process.hpp>

#include <cstdio>
#include <numeric>

namespace pf = parafork;

struct image_maker {
    pf::shared_array<float> image{4, 6};  // rows x columns, made in the frontend

    void pre_run() { std::printf("backend: pre_run (open devices, start threads here)\n"); }
    void post_run() { std::printf("backend: post_run (release them here)\n"); }

    void draw(float level) {
        for (std::size_t r = 0; r < image.extent(0); ++r)
            for (std::size_t c = 0; c < image.extent(1); ++c)
                image(r, c) = level * static_cast<float>(r * 10 + c);
    }
};

int main() {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines in order when piped (the backend inherits it)
    pf::process<image_maker> p(image_maker{}, {.name = "image_maker"});
    p.start();
    auto& image = p.actor().image;  // the frontend's view of the same memory
    for (float level : {1.0f, 2.0f}) {
        p.ask(&image_maker::draw, level).get();
        float sum = std::accumulate(image.begin(), image.end(), 0.0f);
        std::printf("frontend: level %.0f, image(3,5) = %.0f, sum = %.0f\n", level, image(3, 5), sum);
        // 4 x 6 values of r * 10 + c sum to 420.
        if (image(3, 5) != level * 35 || sum != level * 420) {
            std::fprintf(stderr, "frontend: the image is not what the backend drew\n");
            return 1;
        }
    }
    return p.join().ok() ? 0 : 1;
}
