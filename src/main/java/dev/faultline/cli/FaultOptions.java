package dev.faultline.cli;

import dev.faultline.vmm.fault.FaultPlan;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Option;

/** The memory-fault options of {@code run} (docs/memory-faults.md). */
final class FaultOptions {
    @Option(names = "--exit-on-missing",
            description = "Every page of RAM from 1 MiB up starts missing; the VMM installs each page on its memory-fault exit (the "
                    + "image's pages from their clean copy, others as zero pages). ref: the EXIT_ON_MISSING memslot flag; kvm: a "
                    + "userfaultfd that fails KVM's own faults (exit delivery; not with --poison there).")
    boolean exitOnMissing;

    @Option(names = "--poison", paramLabel = "GPA[,GPA...]", split = ",", converter = Units.AddressConverter.class,
            description = "Mark these host pages hardware-poisoned before the guest starts; the VMM replaces a page from its clean "
                    + "copy when it has one (an image page), else stops the vCPU with a report. ref: a per-page mark; kvm: a userfaultfd poison marker.")
    List<Long> poison = new ArrayList<>();

    @Option(names = "--private", paramLabel = "GPA:SIZE",
            description = "A VM with private memory (VM_TYPE_SW_PROTECTED): this range starts private; the VMM converts pages on "
                    + "implicit (exit) and explicit (KVM_HC_MAP_GPA_RANGE) requests.")
    String privateRange;

    @Option(names = "--memfault-reasons", paramLabel = "MASK",
            description = "Enable memory-fault exits only for these reasons (seed 000's capability; bits: 1 unknown, 2 missing, "
                    + "4 private mismatch, 8 poison). A fault whose reason is left out fails KVM_RUN with a bare errno.")
    String memfaultReasons;

    @Option(names = "--async-pf", description = "Resolve missing pages in the background (seed 004); needs --exit-on-missing.")
    boolean asyncPf;

    FaultPlan plan() {
        long pGpa = -1, pSize = 0;
        if (privateRange != null) {
            String[] p = privateRange.split(":");
            if (p.length != 2) throw new UserError("--private takes GPA:SIZE (e.g. 0x800000:1M), not '" + privateRange + "'");
            pGpa = Units.parseAddress(p[0]);
            pSize = Units.parseSize(p[1]);
        }
        long mask = -1;
        if (memfaultReasons != null) {
            try {
                mask = Long.decode(memfaultReasons);
            } catch (NumberFormatException e) {
                throw new UserError("--memfault-reasons takes a number (0x-hex or decimal), not '" + memfaultReasons + "'");
            }
        }
        try {
            return new FaultPlan(exitOnMissing, poison, pGpa, pSize, mask, asyncPf, List.of());
        } catch (IllegalArgumentException e) {
            throw new UserError(e.getMessage());
        }
    }
}
