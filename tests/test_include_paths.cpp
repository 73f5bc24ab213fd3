// The include paths of the release before the exec/ layout (exec/<concept>/) still work for one
// release: each old header forwards to its new place. This file includes the old paths only,
// so it stops compiling when a forwarder is lost, and checks that each brought its types.
#include <parafork/exec/fork_join.hpp>
#include <parafork/exec/forked.hpp>
#include <parafork/exec/future.hpp>
#include <parafork/exec/generator.hpp>
#include <parafork/exec/map.hpp>
#include <parafork/exec/pipeline.hpp>
#include <parafork/exec/pipeline_context.hpp>
#include <parafork/exec/pipeline_edge.hpp>
#include <parafork/exec/pipeline_graph.hpp>
#include <parafork/exec/pipeline_records.hpp>
#include <parafork/exec/pipeline_types.hpp>
#include <parafork/exec/pool.hpp>
#include <parafork/exec/pool_core.hpp>
#include <parafork/exec/pool_engine.hpp>
#include <parafork/exec/proc_pool.hpp>
#include <parafork/exec/process.hpp>
#include <parafork/exec/process_base.hpp>
#include <parafork/exec/process_shared.hpp>
#include <parafork/exec/selector.hpp>
#include <parafork/exec/stages.hpp>
#include <parafork/exec/thread.hpp>
#include <parafork/exec/zygote.hpp>
#include <parafork/options.hpp>

#include <gtest/gtest.h>

#include <type_traits>

namespace pf = parafork;

TEST(include_paths, old_paths_bring_the_same_types) {
    static_assert(std::is_class_v<pf::options>);
    static_assert(std::is_class_v<pf::pool<>>);
    static_assert(std::is_class_v<pf::proc_pool>);
    static_assert(std::is_class_v<pf::thread>);
    static_assert(std::is_class_v<pf::generator<int>>);
    static_assert(std::is_class_v<pf::zygote>);
    static_assert(std::is_class_v<pf::selector>);
    // The old options.hpp path brings the jobs rule with it.
    EXPECT_EQ(pf::resolve_jobs(3), 3u);
}
