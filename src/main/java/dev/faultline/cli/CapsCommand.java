package dev.faultline.cli;

import dev.faultline.kvm.HostCapabilities;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "caps", header = "What this host offers: /dev/kvm, its memory-fault capabilities, userfaultfd.",
        mixinStandardHelpOptions = true,
        description = {"Reports what this host offers for memory-fault handling: /dev/kvm and its API version,",
                "KVM_CAP_MEMORY_FAULT_INFO, guest_memfd and its flags, VM types, memory attributes per VM type,",
                "and userfaultfd with its features. Missing pieces are reported with the reason, never as errors."})
final class CapsCommand implements Callable<Integer> {
    @Option(names = "--json", description = "Print one JSON object instead of text.")
    boolean json;

    @Option(names = "--kvm-device", paramLabel = "PATH", description = "The KVM device to probe (default: ${DEFAULT-VALUE}).", defaultValue = "/dev/kvm")
    String device;

    @Override
    public Integer call() {
        HostCapabilities caps = HostCapabilities.probe(device);
        if (json) {
            Json.print(System.out, caps.toMap());
        } else {
            caps.lines().forEach(System.out::println);
        }
        return 0;
    }
}
