package dev.faultline.kvm;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.sys.ErrnoException;

/** Skips a test, with the reason, where /dev/kvm is missing or not usable. */
final class KvmAssumptions {
    private KvmAssumptions() {}

    static KvmHypervisor openKvmOrSkip() {
        try {
            return KvmHypervisor.open();
        } catch (ErrnoException e) {
            assumeTrue(false, "needs a usable /dev/kvm: " + e.getMessage());
            throw e;
        }
    }
}
