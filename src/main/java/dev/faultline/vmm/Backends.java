package dev.faultline.vmm;

import dev.faultline.hv.Hypervisor;
import dev.faultline.kvm.KvmHypervisor;
import dev.faultline.ref.RefHypervisor;
import dev.faultline.sys.ErrnoException;
import java.util.List;

/** Opens a backend by name, and picks the best one this machine has. */
public final class Backends {
    private Backends() {}

    public static final List<String> NAMES = List.of("kvm", "ref", "auto");

    /** The backend that "auto" picks, with the reason. */
    public record Choice(String name, String why) {}

    public static Choice best() {
        try (KvmHypervisor kvm = KvmHypervisor.open()) {
            return new Choice("kvm", "/dev/kvm works (API version " + kvm.apiVersion() + ")");
        } catch (ErrnoException | UnsupportedOperationException e) {
            return new Choice("ref", "/dev/kvm is not usable here (" + e.getMessage() + "), so the reference hypervisor runs the guest");
        }
    }

    /**
     * Opens {@code name} ("kvm", "ref" or "auto").
     * @throws IllegalArgumentException for an unknown name, or kvm where /dev/kvm is missing (one clear line)
     */
    public static Hypervisor open(String name) {
        return switch (name) {
            case "kvm" -> {
                try {
                    yield KvmHypervisor.open();
                } catch (ErrnoException e) {
                    throw new IllegalArgumentException("the kvm backend needs a working /dev/kvm: " + e.getMessage()
                            + "; use --backend ref to run on the reference hypervisor");
                }
            }
            case "ref" -> openRef();
            case "auto" -> open(best().name());
            default -> throw new IllegalArgumentException("unknown backend '" + name + "'; choose one of " + NAMES);
        };
    }

    private static Hypervisor openRef() {
        return new RefHypervisor();
    }
}
