package dev.faultline.vmm.fault;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.kvm.KvmHypervisor;
import dev.faultline.ref.RefHypervisor;
import dev.faultline.sys.ErrnoException;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Every scenario holds on ref; on kvm nothing fails and whatever cannot run says so with a reason. */
class ScenariosTest {
    static Stream<String> names() { return Scenarios.ALL.stream().map(Scenarios.Scenario::name); }

    @ParameterizedTest
    @MethodSource("names")
    void shouldHoldEveryCheckOnRef(String name) {
        try (RefHypervisor hv = new RefHypervisor()) {
            ScenarioResult r = Scenarios.byName(name).run().apply(hv);
            assertEquals("held", r.verdict(), () -> String.join("\n", r.lines()));
            assertTrue(r.checks().size() >= 3, "a scenario checks several things");
        }
    }

    @ParameterizedTest
    @MethodSource("names")
    void shouldSayPlainlyWhatKvmCannotDoAndFailNothing(String name) {
        try (KvmHypervisor hv = kvmOrSkip()) {
            ScenarioResult r = Scenarios.byName(name).run().apply(hv);
            assertFalse(r.failed(), () -> String.join("\n", r.lines()));
            for (ScenarioResult.Check c : r.checks()) {
                if (c.status() == ScenarioResult.Status.NOT_SUPPORTED) {
                    assertTrue(c.detail().startsWith("not supported here: ") && c.detail().length() > 60, c.detail());
                }
            }
        }
    }

    /** Poison on kvm is a userfaultfd poison marker: where the kernel offers it, both poison scenarios hold as on ref. */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"poison-replace", "poison-stop"})
    void shouldHoldThePoisonScenariosOnKvm(String name) {
        try (KvmHypervisor hv = kvmOrSkip()) {
            assumeTrue(dev.faultline.sys.Userfaultfd.offers(dev.faultline.sys.Userfaultfd.FEATURE_POISON), "skipped: userfaultfd lacks UFFD_FEATURE_POISON");
            ScenarioResult r = Scenarios.byName(name).run().apply(hv);
            assertEquals("held", r.verdict(), () -> String.join("\n", r.lines()));
        }
    }

    /**
     * Exit on missing on kvm is exit delivery (a userfaultfd that fails KVM's own faults): every check
     * holds as on ref, with the locked increment's exit being the emulator's read. On this host's KVM;
     * a KVM that answers such an access with a bare EFAULT instead would fail it, and that is a finding.
     */
    @org.junit.jupiter.api.Test
    void shouldHoldTheExitOnMissingScenarioOnKvmThroughExitDelivery() {
        try (KvmHypervisor hv = kvmOrSkip()) {
            dev.faultline.paging.KvmExitDeliveryTest.kvmWithUserfaultfdOrSkip().close();
            ScenarioResult r = Scenarios.byName("exit-on-missing").run().apply(hv);
            assertEquals("held", r.verdict(), () -> String.join("\n", r.lines()));
            assertTrue(r.checks().size() >= 6, "every check ran: " + r.lines());
        }
    }

    private static KvmHypervisor kvmOrSkip() {
        try {
            return KvmHypervisor.open();
        } catch (ErrnoException | UnsupportedOperationException e) {
            assumeTrue(false, "skipped: /dev/kvm is not usable here (" + e.getMessage() + ")");
            throw e;
        }
    }
}
