package dev.faultline.cli;

import dev.faultline.hv.Hypervisor;
import dev.faultline.paging.uffd.ExitDeliveryProbe;
import dev.faultline.vmm.Backends;

/** The one-line refusal of an option that needs exit delivery on a kvm host where it does not work ({@link ExitDeliveryProbe}). */
final class ExitDeliveryCheck {
    private ExitDeliveryCheck() {}

    /** Refuses {@code option} when {@code hv} is kvm and exit delivery does not work on it; nothing on ref. */
    static void require(Hypervisor hv, String option) {
        String why = hv.name().equals("kvm") ? ExitDeliveryProbe.unavailableReason(hv) : null;
        if (why != null) throw new UserError(option + " on kvm: " + why);
    }

    /** The same on the backend {@code backend} names (kvm, ref or auto), opened for the check and closed. */
    static void require(String backend, String option) {
        try (Hypervisor hv = Backends.open(backend)) {
            require(hv, option);
        }
    }
}
