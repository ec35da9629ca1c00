#include "lease_cache.h"

namespace kindling::routerd {

LeaseCache::Take LeaseCache::take(const std::string& key, const std::string& function, size_t limit,
                                  Clock::time_point deadline, HeldLease& out) {
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
    Waiter me{&key, {}, std::nullopt, false, Clock::now()};
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

std::optional<HeldLease> LeaseCache::pop_held_locked(const std::string& key) {
    auto it = held_.find(key);
    if (it == held_.end()) return std::nullopt;
    HeldLease h = std::move(it->second.back());
    it->second.pop_back();
    if (it->second.empty()) held_.erase(it);
    return h;
}

std::optional<HeldLease> LeaseCache::take_held(const std::string& key) {
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

bool LeaseCache::put(const std::string& key, HeldLease h) {
    if (hold_.count() <= 0) return false;
    std::lock_guard lk(mu_);
    Function& fn = functions_[h.function];
    for (auto it = fn.waiters.begin(); it != fn.waiters.end(); ++it)
        if (*(*it)->key == key) {
            Waiter* w = *it;
            fn.waiters.erase(it);
            w->lease = std::move(h);
            w->cv.notify_one();
            return true;
        }
    held_[key].push_back(std::move(h));
    return true;
}

void LeaseCache::ended(const std::string& function) {
    std::lock_guard lk(mu_);
    Function& fn = functions_[function];
    if (fn.out > 0) fn.out--;
    hand_slot(fn);
}

std::vector<HeldLease> LeaseCache::remove_if_locked(Clock::time_point now, bool all) {
    std::vector<HeldLease> gone;
    for (auto it = held_.begin(); it != held_.end();) {
        auto& v = it->second;
        // Oldest first: once one is young enough, the rest are too.
        size_t n = 0;
        while (n < v.size() && (all || now - v[n].since >= hold_)) ++n;
        for (size_t i = 0; i < n; ++i) gone.push_back(std::move(v[i]));
        v.erase(v.begin(), v.begin() + static_cast<long>(n));
        it = v.empty() ? held_.erase(it) : std::next(it);
    }
    for (const HeldLease& h : gone) {
        Function& fn = functions_[h.function];
        if (fn.out > 0) fn.out--;
        hand_slot(fn);
    }
    return gone;
}

std::vector<HeldLease> LeaseCache::expired(Clock::time_point now) {
    std::lock_guard lk(mu_);
    return remove_if_locked(now, false);
}

std::vector<HeldLease> LeaseCache::take_all() {
    std::lock_guard lk(mu_);
    return remove_if_locked(Clock::now(), true);
}

size_t LeaseCache::out(const std::string& function) const {
    std::lock_guard lk(mu_);
    auto it = functions_.find(function);
    return it == functions_.end() ? 0 : it->second.out;
}

std::optional<LeaseCache::Clock::time_point> LeaseCache::oldest_wait(const std::string& function) const {
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

}  // namespace kindling::routerd
