package dev.faultline.kvm;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.util.Map;
import org.junit.jupiter.api.Test;

class HostCapabilitiesTest {
    @Test
    void shouldReportAMissingKvmDeviceAsAbsentWithTheReasonInsteadOfThrowing() {
        HostCapabilities caps = HostCapabilities.probe("/dev/no-such-kvm");
        assertFalse(caps.kvmAvailable());
        assertTrue(caps.kvmReason().contains("ENOENT"), caps.kvmReason());
        assertEquals(-1, caps.apiVersion());
        assertFalse(caps.memoryFaultInfo());
        @SuppressWarnings("unchecked")
        Map<String, Object> kvm = (Map<String, Object>) caps.toMap().get("kvm");
        assertEquals(false, kvm.get("available"));
        assertTrue(caps.toString().startsWith("kvm: unavailable"), caps.toString());
    }

    @Test
    void shouldReportWhatThisHostsKvmOffers() {
        HostCapabilities caps = HostCapabilities.probe();
        assumeTrue(caps.kvmAvailable(), "needs /dev/kvm: " + caps.kvmReason());
        System.out.println(caps);
        assertEquals(12, caps.apiVersion());
        assertTrue(caps.cap("NR_MEMSLOTS") > 0);
        assertTrue(caps.memoryAttributes().containsKey("DEFAULT"));
        assertEquals(java.util.List.of("kvm", "userfaultfd"), java.util.List.copyOf(caps.toMap().keySet()));
        if (caps.userfaultfdAvailable()) assertTrue(caps.uffdFeatures() >= 0);
    }
}
