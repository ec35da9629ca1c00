#include "assign/snapfs_mounts.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "assign/sandbox_processes.h"
#include "base/error.h"
#include "base/io.h"
#include "base/log.h"


namespace kindling {

std::string SnapfsMounts::mount(const std::string& manifest, const std::string& store) {
    std::lock_guard lk(mu_);
    auto it = mounts_.find(manifest);
    if (it != mounts_.end()) return it->second;
    std::string mnt = run_dir_ + "/mnt/" + manifest;
    std::filesystem::create_directories(mnt);
    std::vector<std::string> args = {snapfs_, manifest, mnt, "--store", store, "-q"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    std::string log_path = run_dir_ + "/mnt/" + manifest + ".log";
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    // Only what its store needs: the layer secrets and S3 credentials.
    ChildEnvironment env({"KINDLING_CONVERGENCE_SECRET", "KINDLING_TENANT_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                          "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "PATH"});
    pid_t pid = 0;
    int rc = ::posix_spawnp(&pid, snapfs_.c_str(), &fa, nullptr, argv.data(), env.envp());
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw SysError("spawn " + snapfs_, rc);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    // snapfs returns once mounted (it detaches), or fails with the reason on stderr.
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        std::string why;
        try {
            why = read_file(log_path);
        } catch (const std::exception&) {
        }
        while (!why.empty() && why.back() == '\n') why.pop_back();
        throw Error("snapfs " + manifest + " --store " + store + " failed: " + why, kExitUnavailable);
    }
    log_info("mounted layer %s from %s at %s", manifest.c_str(), store.c_str(), mnt.c_str());
    mounts_.emplace(manifest, mnt);
    return mnt;
}

void SnapfsMounts::unmount_all() {
    std::lock_guard lk(mu_);
    for (auto& [id, mnt] : mounts_)
        if (::umount2(mnt.c_str(), MNT_DETACH) < 0) log_warn("unmount %s: %s", mnt.c_str(), std::strerror(errno));
    mounts_.clear();
}

}  // namespace kindling
