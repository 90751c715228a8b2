package dev.faultline.vmm.fault;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** What one scenario checked on one backend, and whether each check held. */
public final class ScenarioResult {
    public enum Status { HELD, FAILED, NOT_SUPPORTED }

    public record Check(String what, Status status, String detail) {}

    private final String scenario, backend, description;
    private final List<Check> checks = new ArrayList<>();

    ScenarioResult(String scenario, String backend, String description) {
        this.scenario = scenario;
        this.backend = backend;
        this.description = description;
    }

    /** Records a check: held when {@code ok}, else failed; {@code detail} says what was seen. */
    ScenarioResult check(String what, boolean ok, String detail) {
        checks.add(new Check(what, ok ? Status.HELD : Status.FAILED, detail));
        return this;
    }

    /** A check this backend cannot run here, with the reason (never counted as holding). */
    ScenarioResult notSupported(String what, String why) {
        checks.add(new Check(what, Status.NOT_SUPPORTED, "not supported here: " + why));
        return this;
    }

    public String scenario() { return scenario; }
    public String backend() { return backend; }
    public String description() { return description; }
    public List<Check> checks() { return List.copyOf(checks); }

    public boolean failed() { return checks.stream().anyMatch(c -> c.status() == Status.FAILED); }

    /** "held" (every check held), "failed", or "not supported here" (nothing failed, something could not run). */
    public String verdict() {
        if (failed()) return "failed";
        if (checks.stream().anyMatch(c -> c.status() == Status.NOT_SUPPORTED)) {
            return checks.stream().anyMatch(c -> c.status() == Status.HELD) ? "held where supported; partly not supported here" : "not supported here";
        }
        return "held";
    }

    public Map<String, Object> toJson() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("scenario", scenario);
        m.put("backend", backend);
        m.put("description", description);
        m.put("verdict", verdict());
        List<Object> cs = new ArrayList<>();
        for (Check c : checks) {
            Map<String, Object> x = new LinkedHashMap<>();
            x.put("check", c.what());
            x.put("status", c.status().name().toLowerCase().replace('_', ' '));
            x.put("detail", c.detail());
            cs.add(x);
        }
        m.put("checks", cs);
        return m;
    }

    public List<String> lines() {
        List<String> out = new ArrayList<>();
        out.add("scenario " + scenario + " on " + backend + ": " + verdict());
        out.add("  " + description);
        for (Check c : checks) {
            String tag = switch (c.status()) { case HELD -> "held"; case FAILED -> "FAILED"; case NOT_SUPPORTED -> "n/a"; };
            out.add(String.format("  [%s] %s: %s", tag, c.what(), c.detail()));
        }
        return out;
    }
}
