package dev.faultline.cli;

import dev.faultline.kvm.HostCapabilities;
import dev.faultline.kvm.KvmHypervisor;
import dev.faultline.paging.uffd.ExitDeliveryProbe;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "caps", header = "What this host offers: /dev/kvm, its memory-fault capabilities, userfaultfd.",
        mixinStandardHelpOptions = true,
        description = {"Reports what this host offers for memory-fault handling: /dev/kvm and its API version,",
                "KVM_CAP_MEMORY_FAULT_INFO, guest_memfd and its flags, VM types, memory attributes per VM type,",
                "and userfaultfd with its features, and whether exit delivery works here (a tiny guest is run to find",
                "out: its store to a missing page must come back as a memory-fault exit with the gpa). Missing pieces",
                "are reported with the reason, never as errors."})
final class CapsCommand implements Callable<Integer> {
    @Option(names = "--json", description = "Print one JSON object instead of text.")
    boolean json;

    @Option(names = "--kvm-device", paramLabel = "PATH", description = "The KVM device to probe (default: ${DEFAULT-VALUE}).", defaultValue = "/dev/kvm")
    String device;

    @Override
    public Integer call() {
        HostCapabilities caps = HostCapabilities.probe(device);
        ExitDeliveryProbe.Result exits = exitDelivery(caps);
        if (json) {
            Map<String, Object> all = caps.toMap();
            Map<String, Object> e = new LinkedHashMap<>();
            e.put("works", exits.works());
            e.put("detail", exits.detail());
            all.put("exit_delivery", e);
            Json.print(System.out, all);
        } else {
            caps.lines().forEach(System.out::println);
            System.out.println("exit delivery (a vCPU serves its own missing page after a memory-fault exit): "
                    + (exits.works() ? "works: " : "no: ") + exits.detail());
        }
        return 0;
    }

    /** Runs the exit-delivery probe where it can run (the default device, kvm and userfaultfd usable). */
    private ExitDeliveryProbe.Result exitDelivery(HostCapabilities caps) {
        if (!caps.kvmAvailable()) return new ExitDeliveryProbe.Result(false, "needs kvm: " + caps.kvmReason());
        if (!caps.userfaultfdAvailable()) return new ExitDeliveryProbe.Result(false, "needs userfaultfd, which is not usable here");
        if (!device.equals("/dev/kvm")) return new ExitDeliveryProbe.Result(false, "probed on /dev/kvm only, not on " + device);
        try (KvmHypervisor kvm = KvmHypervisor.open()) {
            return ExitDeliveryProbe.on(kvm);
        }
    }
}
