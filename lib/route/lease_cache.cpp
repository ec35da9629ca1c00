#include "route/lease_cache.h"

namespace kindling::route {

std::string lease_key(const std::string& function, const std::string& version) {
    return function + '\0' + version;
}

LeaseCache::Take LeaseCache::take(const std::string& key, const std::string& function, size_t limit,
                                  std::chrono::steady_clock::time_point deadline, Lease& out) {
    std::unique_lock lk(mu_);
    Function& fn = functions_[function];
    if (auto h = pop_held_locked(key)) {
        out = std::move(*h);
        return Take::kHeld;
    }
    if (fn.out < limit && fn.waiters.empty()) {
        fn.out++;
        return Take::kAcquire;
    }
    Waiter me{&key, {}, std::nullopt, false, clock_.now()};
    fn.waiters.push_back(&me);
    while (!me.lease && !me.slot)
        if (me.cv.wait_until(lk, deadline) == std::cv_status::timeout && !me.lease && !me.slot) {
            std::erase(fn.waiters, &me);
            return Take::kThrottled;
        }
    if (me.lease) {
        out = std::move(*me.lease);
        return Take::kHeld;
    }
    return Take::kAcquire;  // hand_slot counted it
}

std::optional<Lease> LeaseCache::pop_held_locked(const std::string& key) {
    auto it = held_.find(key);
    if (it == held_.end()) return std::nullopt;
    Lease h = std::move(it->second.back());
    it->second.pop_back();
    if (it->second.empty()) held_.erase(it);
    return h;
}

std::optional<Lease> LeaseCache::take_held(const std::string& key) {
    std::lock_guard lk(mu_);
    return pop_held_locked(key);
}

void LeaseCache::hand_slot(Function& fn) {
    if (fn.waiters.empty()) return;
    Waiter* w = fn.waiters.front();
    fn.waiters.pop_front();
    fn.out++;
    w->slot = true;
    w->cv.notify_one();
}

bool LeaseCache::put(Lease lease) {
    if (hold_.count() <= 0) return false;
    lease.since = clock_.now();
    std::lock_guard lk(mu_);
    Function& fn = functions_[lease.function];
    for (auto it = fn.waiters.begin(); it != fn.waiters.end(); ++it)
        if (*(*it)->key == lease.key) {
            Waiter* w = *it;
            fn.waiters.erase(it);
            w->lease = std::move(lease);
            w->cv.notify_one();
            return true;
        }
    std::string key = lease.key;
    held_[key].push_back(std::move(lease));
    return true;
}

void LeaseCache::ended(const std::string& function) {
    std::lock_guard lk(mu_);
    Function& fn = functions_[function];
    if (fn.out > 0) fn.out--;
    hand_slot(fn);
}

std::vector<Lease> LeaseCache::remove_if_locked(bool all) {
    Clock::time_point now = clock_.now();
    std::vector<Lease> gone;
    for (auto it = held_.begin(); it != held_.end();) {
        auto& v = it->second;
        // Oldest first: once one is young enough, the rest are too.
        size_t n = 0;
        while (n < v.size() && (all || now - v[n].since >= hold_)) ++n;
        for (size_t i = 0; i < n; ++i) gone.push_back(std::move(v[i]));
        v.erase(v.begin(), v.begin() + static_cast<long>(n));
        it = v.empty() ? held_.erase(it) : std::next(it);
    }
    for (const Lease& h : gone) {
        Function& fn = functions_[h.function];
        if (fn.out > 0) fn.out--;
        hand_slot(fn);
    }
    return gone;
}

std::vector<Lease> LeaseCache::expired() {
    std::lock_guard lk(mu_);
    return remove_if_locked(false);
}

std::vector<Lease> LeaseCache::take_all() {
    std::lock_guard lk(mu_);
    return remove_if_locked(true);
}

size_t LeaseCache::out(const std::string& function) const {
    std::lock_guard lk(mu_);
    auto it = functions_.find(function);
    return it == functions_.end() ? 0 : it->second.out;
}

std::optional<Clock::time_point> LeaseCache::oldest_wait(const std::string& function) const {
    std::lock_guard lk(mu_);
    auto it = functions_.find(function);
    if (it == functions_.end() || it->second.waiters.empty()) return std::nullopt;
    return it->second.waiters.front()->since;
}

size_t LeaseCache::out() const {
    std::lock_guard lk(mu_);
    size_t n = 0;
    for (const auto& [name, fn] : functions_) n += fn.out;
    return n;
}

size_t LeaseCache::held() const {
    std::lock_guard lk(mu_);
    size_t n = 0;
    for (const auto& [key, v] : held_) n += v.size();
    return n;
}

}  // namespace kindling::route
