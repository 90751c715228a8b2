package dev.faultline.cli;

import dev.faultline.hv.Hypervisor;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.fault.ScenarioResult;
import dev.faultline.vmm.fault.Scenarios;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "scenario", header = "One demonstration per memory-fault mechanism, with what it checked.",
        mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Runs one demonstration of a memory-fault mechanism and prints what it checked and whether it held.",
                "On a backend that lacks a mechanism each such check says 'not supported here' and why; it never passes.",
                "Exit code 0 when nothing failed, 1 when a check failed, 2 for a usage mistake."})
final class ScenarioCommand implements Callable<Integer> {
    @Parameters(arity = "0..1", paramLabel = "NAME", description = "The scenario (see --list), or 'all'.")
    String name;

    @Option(names = "--list", description = "List the scenarios.")
    boolean list;

    @Option(names = "--backend", paramLabel = "NAME", defaultValue = "ref", description = "kvm or ref. Default: ${DEFAULT-VALUE}.")
    String backend;

    @Option(names = "--json", description = "Print one JSON object on stdout.")
    boolean json;

    @Override
    public Integer call() {
        if (list || name == null) {
            if (json) {
                List<Object> out = new ArrayList<>();
                for (var s : Scenarios.ALL) out.add(Map.of("name", s.name(), "description", s.description()));
                Json.print(System.out, Map.of("scenarios", out));
            } else {
                for (var s : Scenarios.ALL) System.out.printf("%-17s %s%n", s.name(), s.description());
            }
            return list ? 0 : 2;
        }
        List<Scenarios.Scenario> chosen = new ArrayList<>();
        if (name.equals("all")) chosen.addAll(Scenarios.ALL);
        else if (Scenarios.byName(name) != null) chosen.add(Scenarios.byName(name));
        else throw new UserError("no scenario '" + name + "'; --list shows them");
        if (!backend.equals("kvm") && !backend.equals("ref")) throw new UserError("--backend is kvm or ref, not '" + backend + "'");
        List<ScenarioResult> results = new ArrayList<>();
        try (Hypervisor hv = Backends.open(backend)) {
            for (var s : chosen) results.add(s.run().apply(hv));
        }
        if (json) {
            Object out;
            if (results.size() == 1) {
                out = results.getFirst().toJson();
            } else {
                Map<String, Object> m = new LinkedHashMap<>();
                List<Object> rs = new ArrayList<>();
                for (ScenarioResult r : results) rs.add(r.toJson());
                m.put("backend", backend);
                m.put("scenarios", rs);
                out = m;
            }
            Json.print(System.out, out);
        } else {
            for (ScenarioResult r : results) r.lines().forEach(System.out::println);
        }
        return results.stream().anyMatch(ScenarioResult::failed) ? 1 : 0;
    }
}
