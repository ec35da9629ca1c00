#include "route/lambda_api.h"

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/error.h"
#include "base/log.h"
#include "route/lambda_format.h"

namespace kindling::route {

using json = nlohmann::json;

namespace {

const std::string kFunctionsPrefix = "/2015-03-31/functions";

json function_config(const Function& f, const std::string& region, const std::string& version) {
    return {{"FunctionName", f.name},
            {"FunctionArn", arn(region, f.tenant, f.name, version == "$LATEST" ? "" : version)},
            {"Runtime", "provided.al2"},
            {"Role", "arn:aws:iam::" + f.tenant + ":role/kindling"},
            {"Handler", "nano"},
            {"CodeSize", 0},
            {"Description", f.description},
            {"Timeout", f.timeout_s},
            {"MemorySize", f.memory_mib},
            {"LastModified", "1970-01-01T00:00:00.000+0000"},
            {"Version", version},
            {"PackageType", "Zip"},
            {"State", "Active"},
            {"Architectures", {"x86_64"}}};
}

HttpResponse too_large(size_t limit) {
    return lambda_error(413, "RequestTooLargeException",
                        "Request must be smaller than " + std::to_string(limit) + " bytes for the InvokeFunction operation");
}

size_t payload_limit(const HttpHeaders& headers) {
    return headers.get("X-Amz-Invocation-Type").value_or("") == "Event" ? kEventPayloadLimit : kSyncPayloadLimit;
}

HttpResponse unknown_operation(const HttpRequest& req, const std::string& path) {
    return lambda_error(404, "UnknownOperationException", "Unknown operation " + req.method + " " + path);
}

// The function name and qualifier in a path's name part: NAME, NAME:QUALIFIER,
// ACCOUNT:function:NAME[:Q], arn:aws:lambda:REGION:ACCOUNT:function:NAME[:Q].
std::pair<std::string, std::string> split_function_name(const std::string& name_part) {
    std::string name = name_part, qualifier;
    std::vector<std::string> parts;
    size_t s = 0;
    for (;;) {
        size_t c = name_part.find(':', s);
        parts.push_back(name_part.substr(s, c == std::string::npos ? std::string::npos : c - s));
        if (c == std::string::npos) break;
        s = c + 1;
    }
    auto fn = std::find(parts.begin(), parts.end(), "function");
    if (fn != parts.end() && fn + 1 != parts.end()) {
        name = *(fn + 1);
        if (fn + 2 != parts.end()) qualifier = *(fn + 2);
    } else if (parts.size() == 2) {
        name = parts[0];
        qualifier = parts[1];
    }
    return {name, qualifier};
}

}  // namespace

LambdaApi::LambdaApi(std::string functions_path, std::string credentials_path, RouterMetrics& metrics)
    : functions_path_(std::move(functions_path)),
      credentials_path_(std::move(credentials_path)),
      metrics_(metrics),
      verifier_("lambda") {
    registry_ = Registry::load(functions_path_);
    verifier_.set_keys(load_access_keys(credentials_path_));
}

void LambdaApi::reload() {
    try {
        auto reg = Registry::load(functions_path_);
        auto keys = load_access_keys(credentials_path_);
        {
            std::lock_guard lk(registry_mu_);
            registry_ = reg;
        }
        verifier_.set_keys(std::move(keys));
        log_info("reloaded %s and %s", functions_path_.c_str(), credentials_path_.c_str());
    } catch (const Error& e) {
        log_error("reload failed, keeping the previous configuration: %s", e.what());
    }
}

std::shared_ptr<const Registry> LambdaApi::registry() const {
    std::lock_guard lk(registry_mu_);
    return registry_;
}

HttpResponse LambdaApi::error_response(int status, const std::string& message) {
    switch (status) {
    case 413: return too_large(kSyncPayloadLimit);
    case 400: return lambda_error(400, "InvalidRequestContentException", message);
    case 431: return lambda_error(431, "RequestHeaderFieldsTooLarge", message);
    default: return lambda_error(status, status >= 500 ? "ServiceException" : "InvalidRequestContentException", message);
    }
}

HttpResponse LambdaApi::list_functions(const SigV4Identity& who) const {
    json list = json::array();
    for (const Function* f : registry()->of_tenant(who.tenant))
        list.push_back(function_config(*f, who.region, "$LATEST"));
    return HttpResponse::json(200, to_text(json{{"Functions", list}}));
}

std::optional<HttpResponse> LambdaApi::check_head(const HttpRequest& head,
                                                  std::optional<uint64_t> content_length) const {
    if (head.method == "GET" && head.path() == "/metrics") return std::nullopt;
    if (auto failure = verifier_.precheck(head.headers)) {
        metrics_.auth_failures++;
        log_verbose("%s %s from %s: %s (before the body)", head.method.c_str(), head.target.c_str(), head.peer.c_str(),
                    failure->code.c_str());
        return lambda_error(failure->status, failure->code, failure->message);
    }
    size_t limit = payload_limit(head.headers);
    if (content_length && *content_length > limit) {
        metrics_.too_large++;
        return too_large(limit);
    }
    return std::nullopt;
}

std::variant<HttpResponse, InvokeCall> LambdaApi::route(const HttpRequest& req) const {
    std::string path(req.path());
    auto auth = verifier_.verify(req, std::time(nullptr));
    if (!auth.ok()) {
        metrics_.auth_failures++;
        log_verbose("%s %s from %s: %s", req.method.c_str(), req.target.c_str(), req.peer.c_str(),
                    auth.failure.code.c_str());
        return lambda_error(auth.failure.status, auth.failure.code, auth.failure.message);
    }
    const SigV4Identity& who = *auth.identity;
    if (path.rfind(kFunctionsPrefix, 0) != 0) return unknown_operation(req, path);
    std::string rest = path.substr(kFunctionsPrefix.size());
    if ((rest.empty() || rest == "/") && req.method == "GET") return list_functions(who);
    if (rest.empty() || rest[0] != '/') return unknown_operation(req, path);
    rest.erase(0, 1);
    std::string op;
    size_t slash = rest.find('/');
    auto [name, path_qualifier] = split_function_name(percent_decode(rest.substr(0, slash)));
    if (slash != std::string::npos) op = rest.substr(slash + 1);
    std::string qualifier = query_param(req.query(), "Qualifier");
    if (!path_qualifier.empty() && !qualifier.empty() && path_qualifier != qualifier)
        return lambda_error(400, "InvalidParameterValueException",
                            "The derived qualifier from the function name does not match the specified qualifier.");
    if (qualifier.empty()) qualifier = path_qualifier;

    auto reg = registry();
    const Function* f = reg->find(who.tenant, name);
    std::optional<std::string> version = f ? f->resolve(qualifier) : std::nullopt;
    if (!f || !version) {
        metrics_.not_found++;
        return lambda_error(404, "ResourceNotFoundException",
                            "Function not found: " + arn(who.region, who.tenant, name, qualifier));
    }
    if (op.empty() && req.method == "GET") {
        json cfg = function_config(*f, who.region, *version);
        const Snapshot& s = f->versions.at(*version);
        json out = {{"Configuration", cfg},
                    {"Code", {{"RepositoryType", "kindling"}, {"Location", s.dir.empty() ? s.store + "#" + s.manifest : s.dir}}},
                    {"Concurrency", {{"ReservedConcurrentExecutions", f->concurrency}}}};
        return HttpResponse::json(200, to_text(out));
    }
    if (op == "invocations" && req.method == "POST") return invoke(req, std::move(reg), *f, *version);
    return unknown_operation(req, path);
}

std::variant<HttpResponse, InvokeCall> LambdaApi::invoke(const HttpRequest& req, std::shared_ptr<const Registry> reg,
                                                         const Function& f, const std::string& version) const {
    std::string type = req.headers.get("X-Amz-Invocation-Type").value_or("RequestResponse");
    if (type != "RequestResponse" && type != "Event" && type != "DryRun")
        return lambda_error(400, "InvalidParameterValueException",
                            "1 validation error detected: Value '" + type +
                                "' at 'invocationType' failed to satisfy constraint: Member must satisfy enum "
                                "value set: [Event, RequestResponse, DryRun]");
    size_t limit = payload_limit(req.headers);
    if (req.body.size() > limit) {
        metrics_.too_large++;
        return too_large(limit);
    }
    if (type == "DryRun") {
        metrics_.invokes_dry_run++;
        HttpResponse r{204, {}, {}};
        r.headers.set("X-Amz-Executed-Version", version);
        return r;
    }
    InvokeCall call;
    call.type = type == "Event" ? InvokeCall::kEvent : InvokeCall::kRequestResponse;
    call.registry = std::move(reg);
    call.function = &f;
    call.version = version;
    call.payload = req.body;
    auto lt = req.headers.get("X-Amz-Log-Type");
    call.log_tail = call.type == InvokeCall::kRequestResponse && lt && *lt == "Tail";
    return call;
}

HttpResponse invoke_response(const InvokeResult& res, const std::string& version, bool log_tail) {
    HttpResponse r;
    switch (res.kind) {
    case InvokeResult::kThrottled:
        return lambda_error(429, "TooManyRequestsException", res.message,
                            "ReservedFunctionConcurrentInvocationLimitExceeded");
    case InvokeResult::kServiceError: return lambda_error(500, "ServiceException", res.message);
    case InvokeResult::kOk: r = HttpResponse{200, {}, res.body}; break;
    case InvokeResult::kFunctionError:
        r = HttpResponse{200, {}, res.body};
        r.headers.set("X-Amz-Function-Error", "Unhandled");
        break;
    }
    r.headers.set("Content-Type", "application/json");
    r.headers.set("X-Amz-Executed-Version", version);
    if (log_tail) r.headers.set("X-Amz-Log-Result", base64(res.log));
    return r;
}

}  // namespace kindling::route
