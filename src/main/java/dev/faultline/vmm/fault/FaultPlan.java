package dev.faultline.vmm.fault;

import java.util.List;

/**
 * Which memory-fault mechanisms a run uses (the {@code run} flags).
 *
 * @param exitOnMissing  every page of the main slot [1 MiB, RAM) starts missing under EXIT_ON_MISSING
 * @param poison         pages marked hardware-poisoned before the guest starts
 * @param privateGpa     start of the range that starts private (VM_TYPE_SW_PROTECTED), or -1
 * @param privateSize    its size
 * @param memfaultReasons the FAULTLINE_MEMORY_FAULT_EXIT mask to enable, or -1 to leave the capability alone
 * @param asyncPf        resolve missing pages in the background (needs exitOnMissing)
 * @param unavailable    pages the page source cannot provide (to show what a failing source does)
 */
public record FaultPlan(boolean exitOnMissing, List<Long> poison, long privateGpa, long privateSize,
                        long memfaultReasons, boolean asyncPf, List<Long> unavailable) {
    public FaultPlan {
        poison = List.copyOf(poison);
        unavailable = List.copyOf(unavailable);
        if (asyncPf && !exitOnMissing) {
            throw new IllegalArgumentException("--async-pf resolves missing pages in the background, so it needs --exit-on-missing");
        }
        for (long p : poison) {
            if ((p & 0xfff) != 0) throw new IllegalArgumentException(String.format("poison gpa 0x%x is not page-aligned", p));
        }
        if (privateGpa != -1 && (((privateGpa | privateSize) & 0xfff) != 0 || privateSize <= 0)) {
            throw new IllegalArgumentException(String.format("--private 0x%x:0x%x must be page-aligned and non-empty", privateGpa, privateSize));
        }
    }

    public static final FaultPlan NONE = new FaultPlan(false, List.of(), -1, 0, -1, false, List.of());

    public boolean hasPrivate() { return privateGpa != -1; }

    public boolean any() {
        return exitOnMissing || !poison.isEmpty() || hasPrivate() || memfaultReasons != -1 || asyncPf;
    }

    public FaultPlan withUnavailable(List<Long> pages) {
        return new FaultPlan(exitOnMissing, poison, privateGpa, privateSize, memfaultReasons, asyncPf, pages);
    }
}
