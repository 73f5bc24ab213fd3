// Functions by name across ranks: a code address becomes (build-id of its loaded object,
// offset from the object's load address), which another rank running the same binary turns
// back into its own address. The build-id, not the file name, identifies the object: ranks may
// run it from different paths, and a different build of the program must not match.
#include <cstring>
#include <elf.h>
#include <link.h>

#include <parafork/mpi/world.hpp>

namespace parafork::mpi::detail {
namespace {

std::string build_id_of(const dl_phdr_info* info) {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const auto& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_NOTE) continue;
        auto* p = reinterpret_cast<const unsigned char*>(info->dlpi_addr + ph.p_vaddr);
        const auto* end = p + ph.p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            ElfW(Nhdr) n;
            std::memcpy(&n, p, sizeof n);
            const auto* name = p + sizeof n;
            const auto* desc = name + ((n.n_namesz + 3) & ~3u);
            const auto* next = desc + ((n.n_descsz + 3) & ~3u);
            if (next > end) break;
            if (n.n_type == NT_GNU_BUILD_ID && n.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
                static const char hex[] = "0123456789abcdef";
                std::string s;
                for (unsigned k = 0; k < n.n_descsz; ++k) {
                    s += hex[desc[k] >> 4];
                    s += hex[desc[k] & 15];
                }
                return s;
            }
            p = next;
        }
    }
    return {};
}

bool in_code(const dl_phdr_info* info, std::uintptr_t a) {
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const auto& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
        const std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
        if (a >= lo && a < lo + ph.p_memsz) return true;
    }
    return false;
}

struct search {
    std::uintptr_t addr = 0;
    const code_ref* want = nullptr;
    code_ref found;
    const void* resolved = nullptr;
};

int visit(dl_phdr_info* info, size_t, void* data) {
    auto& s = *static_cast<search*>(data);
    if (s.want) {
        if (build_id_of(info) != s.want->build_id) return 0;
        const std::uintptr_t a = info->dlpi_addr + s.want->offset;
        s.resolved = in_code(info, a) ? reinterpret_cast<const void*>(a) : nullptr;
        return 1;
    }
    if (!in_code(info, s.addr)) return 0;
    s.found.build_id = build_id_of(info);
    s.found.object = info->dlpi_name && *info->dlpi_name ? info->dlpi_name : "(the program)";
    s.found.offset = s.addr - info->dlpi_addr;
    return 1;
}

} // namespace

code_ref to_code_ref(const void* fn) {
    search s;
    s.addr = reinterpret_cast<std::uintptr_t>(fn);
    dl_iterate_phdr(visit, &s);
    if (s.found.object.empty())
        throw error("parafork::mpi: the code of this call is in no loaded object (generated at run "
                    "time?): other ranks cannot find it");
    if (s.found.build_id.empty())
        throw error("parafork::mpi: " + s.found.object + " has no GNU build-id (link with "
                    "-Wl,--build-id): other ranks could not tell it from another build");
    return s.found;
}

const void* from_code_ref(const code_ref& r) {
    if (r.build_id.empty()) return nullptr;
    search s;
    s.want = &r;
    dl_iterate_phdr(visit, &s);
    return s.resolved;
}

} // namespace parafork::mpi::detail
