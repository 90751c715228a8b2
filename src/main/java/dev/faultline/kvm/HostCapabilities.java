package dev.faultline.kvm;

import dev.faultline.hv.Caps;
import dev.faultline.hv.Vm;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Kvm;
import dev.faultline.sys.Userfaultfd;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What this host offers for memory-fault handling: KVM and its capabilities, and userfaultfd with
 * its features. {@link #probe()} never throws for something missing: it records it as absent with
 * the reason.
 *
 * @param kvmAvailable        /dev/kvm opened and reported API version 12
 * @param kvmReason           why KVM is unavailable, or null
 * @param apiVersion          KVM_GET_API_VERSION, or -1
 * @param systemCaps          capability name to KVM_CHECK_EXTENSION value on /dev/kvm (insertion ordered)
 * @param memoryAttributes    VM type name to KVM_CAP_MEMORY_ATTRIBUTES on a VM of that type
 *                            (the attribute mask, e.g. 8 = PRIVATE), or the reason a VM could not be made
 * @param guestMemfdFlagsVm   KVM_CAP_GUEST_MEMFD_FLAGS on a default VM, or -1
 * @param uffdSyscall         whether userfaultfd(2) works; {@code uffdSyscallReason} says why not
 * @param uffdDevice          whether /dev/userfaultfd works; {@code uffdDeviceReason} says why not
 * @param uffdFeatures        features UFFDIO_API offers, or -1 when no userfaultfd could be made
 * @param uffdIoctls          the ioctls bitmask UFFDIO_API reports
 */
public record HostCapabilities(String kvmDevice, boolean kvmAvailable, String kvmReason, int apiVersion,
                               Map<String, Long> systemCaps, Map<String, Object> memoryAttributes, long guestMemfdFlagsVm,
                               boolean uffdSyscall, String uffdSyscallReason, boolean uffdDevice, String uffdDeviceReason,
                               long uffdFeatures, long uffdIoctls) {

    /** The capabilities probed on /dev/kvm, in report order. */
    static final Object[][] CAPS = {
            {"MEMORY_FAULT_INFO", Caps.MEMORY_FAULT_INFO}, {"USER_MEMORY2", Caps.USER_MEMORY2},
            {"GUEST_MEMFD", Caps.GUEST_MEMFD}, {"GUEST_MEMFD_FLAGS", Caps.GUEST_MEMFD_FLAGS}, {"VM_TYPES", Caps.VM_TYPES},
            {"MEMORY_ATTRIBUTES", Caps.MEMORY_ATTRIBUTES}, {"PRE_FAULT_MEMORY", Caps.PRE_FAULT_MEMORY},
            {"EXIT_HYPERCALL", Caps.EXIT_HYPERCALL}, {"IMMEDIATE_EXIT", Caps.IMMEDIATE_EXIT},
            {"USER_MEMORY", Caps.USER_MEMORY}, {"SET_TSS_ADDR", Caps.SET_TSS_ADDR},
            {"NR_VCPUS", Caps.NR_VCPUS}, {"MAX_VCPUS", Caps.MAX_VCPUS}, {"NR_MEMSLOTS", Caps.NR_MEMSLOTS}};

    static final String[] VM_TYPE_NAMES = {"DEFAULT", "SW_PROTECTED", "SEV", "SEV_ES", "SNP", "TDX"};

    public HostCapabilities {
        systemCaps = Collections.unmodifiableMap(new LinkedHashMap<>(systemCaps));
        memoryAttributes = Collections.unmodifiableMap(new LinkedHashMap<>(memoryAttributes));
    }

    /** Probes /dev/kvm and userfaultfd. */
    public static HostCapabilities probe() {
        return probe(Kvm.DEVICE);
    }

    public static HostCapabilities probe(String kvmDevice) {
        boolean kvmAvailable = false;
        String kvmReason = null;
        int api = -1;
        Map<String, Long> caps = new LinkedHashMap<>();
        Map<String, Object> attributes = new LinkedHashMap<>();
        long gmemFlagsVm = -1;
        try (KvmHypervisor kvm = KvmHypervisor.open(kvmDevice)) {
            kvmAvailable = true;
            api = kvm.apiVersion();
            for (Object[] c : CAPS) caps.put((String) c[0], kvm.checkExtension((Integer) c[1]));
            long types = caps.get("VM_TYPES");
            if (types == 0) types = 1; // kernels without KVM_CAP_VM_TYPES know only the default type
            for (int type = 0; type < 64; type++) {
                if ((types & (1L << type)) == 0) continue;
                String name = type < VM_TYPE_NAMES.length ? VM_TYPE_NAMES[type] : "TYPE_" + type;
                try (Vm vm = kvm.createVm(type)) {
                    attributes.put(name, vm.checkExtension(Caps.MEMORY_ATTRIBUTES));
                    if (type == Caps.VM_TYPE_DEFAULT) gmemFlagsVm = vm.checkExtension(Caps.GUEST_MEMFD_FLAGS);
                } catch (ErrnoException | UnsupportedOperationException | IllegalStateException e) {
                    attributes.put(name, "unavailable: " + e.getMessage());
                }
            }
        } catch (ErrnoException | IllegalStateException e) {
            kvmReason = e.getMessage();
        }

        boolean sys = false, dev = false;
        String sysReason = null, devReason = null;
        long features = -1, ioctls = 0;
        for (Userfaultfd.Source source : Userfaultfd.Source.values()) {
            try (Userfaultfd u = Userfaultfd.open(source)) {
                u.api(0);
                features = u.features();
                ioctls = u.apiIoctls();
                if (source == Userfaultfd.Source.SYSCALL) sys = true; else dev = true;
            } catch (ErrnoException e) {
                if (source == Userfaultfd.Source.SYSCALL) sysReason = e.getMessage(); else devReason = e.getMessage();
            }
        }
        return new HostCapabilities(kvmDevice, kvmAvailable, kvmReason, api, caps, attributes, gmemFlagsVm,
                sys, sysReason, dev, devReason, features, ioctls);
    }

    /** A capability's value, 0 when absent or when KVM is unavailable. */
    public long cap(String name) {
        Long v = systemCaps.get(name);
        return v == null ? 0 : v;
    }

    public boolean memoryFaultInfo() { return cap("MEMORY_FAULT_INFO") > 0; }
    public boolean userMemory2() { return cap("USER_MEMORY2") > 0; }
    public boolean guestMemfd() { return cap("GUEST_MEMFD") > 0; }
    public boolean userfaultfdAvailable() { return uffdSyscall || uffdDevice; }
    public boolean hasUffdFeature(long feature) { return uffdFeatures != -1 && (uffdFeatures & feature) == feature; }

    static List<String> guestMemfdFlagNames(long flags) {
        List<String> n = new ArrayList<>();
        if ((flags & Caps.GUEST_MEMFD_FLAG_MMAP) != 0) n.add("MMAP");
        if ((flags & Caps.GUEST_MEMFD_FLAG_INIT_SHARED) != 0) n.add("INIT_SHARED");
        long rest = flags & ~(Caps.GUEST_MEMFD_FLAG_MMAP | Caps.GUEST_MEMFD_FLAG_INIT_SHARED);
        if (rest != 0) n.add("0x" + Long.toHexString(rest));
        return n;
    }

    static List<String> vmTypeNames(long bitmap) {
        List<String> n = new ArrayList<>();
        for (int t = 0; t < 64; t++) if ((bitmap & (1L << t)) != 0) n.add(t < VM_TYPE_NAMES.length ? VM_TYPE_NAMES[t] : "TYPE_" + t);
        return n;
    }

    static List<String> hypercallNames(long mask) {
        List<String> n = new ArrayList<>();
        for (int b = 0; b < 64; b++) if ((mask & (1L << b)) != 0) n.add(b == 12 ? "MAP_GPA_RANGE" : "hypercall " + b);
        return n;
    }

    private static String hex(long v) { return "0x" + Long.toHexString(v); }

    /** For JSON: nested maps, lists, strings, numbers and booleans, in report order. */
    public Map<String, Object> toMap() {
        Map<String, Object> kvm = new LinkedHashMap<>();
        kvm.put("device", kvmDevice);
        kvm.put("available", kvmAvailable);
        if (!kvmAvailable) kvm.put("reason", kvmReason);
        if (kvmAvailable) {
            kvm.put("api_version", apiVersion);
            Map<String, Object> caps = new LinkedHashMap<>();
            for (Map.Entry<String, Long> e : systemCaps.entrySet()) {
                long v = e.getValue();
                switch (e.getKey()) {
                    case "GUEST_MEMFD_FLAGS" -> caps.put(e.getKey(), Map.of("value", hex(v), "flags", guestMemfdFlagNames(v)));
                    case "VM_TYPES" -> caps.put(e.getKey(), Map.of("value", hex(v), "types", vmTypeNames(v)));
                    case "EXIT_HYPERCALL" -> caps.put(e.getKey(), Map.of("value", hex(v), "hypercalls", hypercallNames(v)));
                    default -> caps.put(e.getKey(), v);
                }
            }
            kvm.put("caps", caps);
            kvm.put("memory_attributes_by_vm_type", memoryAttributes);
            kvm.put("guest_memfd_flags_on_default_vm", guestMemfdFlagsVm == -1 ? "unknown" : hex(guestMemfdFlagsVm));
        }
        Map<String, Object> uffd = new LinkedHashMap<>();
        uffd.put("syscall", sourceMap(uffdSyscall, uffdSyscallReason));
        uffd.put("device", sourceMap(uffdDevice, uffdDeviceReason));
        if (uffdFeatures != -1) {
            uffd.put("features", hex(uffdFeatures));
            uffd.put("feature_names", Userfaultfd.featureNames(uffdFeatures));
            uffd.put("ioctls", Userfaultfd.ioctlNames(uffdIoctls));
        }
        Map<String, Object> all = new LinkedHashMap<>();
        all.put("kvm", kvm);
        all.put("userfaultfd", uffd);
        return all;
    }

    private static Map<String, Object> sourceMap(boolean ok, String reason) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("available", ok);
        if (!ok) m.put("reason", reason);
        return m;
    }

    /** Human-readable report, one fact per line. */
    public List<String> lines() {
        List<String> out = new ArrayList<>();
        if (!kvmAvailable) {
            out.add("kvm: unavailable (" + kvmReason + ")");
        } else {
            out.add("kvm: " + kvmDevice + ", API version " + apiVersion);
            for (Map.Entry<String, Long> e : systemCaps.entrySet()) {
                long v = e.getValue();
                String detail = switch (e.getKey()) {
                    case "GUEST_MEMFD_FLAGS" -> hex(v) + " " + guestMemfdFlagNames(v);
                    case "VM_TYPES" -> hex(v) + " " + vmTypeNames(v);
                    case "EXIT_HYPERCALL" -> hex(v) + " " + hypercallNames(v);
                    default -> v == 0 ? "absent" : Long.toString(v);
                };
                out.add("  KVM_CAP_" + e.getKey() + ": " + detail);
            }
            for (Map.Entry<String, Object> e : memoryAttributes.entrySet()) {
                Object v = e.getValue();
                out.add("  KVM_CAP_MEMORY_ATTRIBUTES on a " + e.getKey() + " VM: "
                        + (v instanceof Long l ? (l == 0 ? "none (no private memory)" : hex(l)) : v));
            }
        }
        out.add("userfaultfd: syscall " + (uffdSyscall ? "available" : "unavailable (" + uffdSyscallReason + ")")
                + ", " + Userfaultfd.DEVICE + " " + (uffdDevice ? "available" : "unavailable (" + uffdDeviceReason + ")"));
        if (uffdFeatures != -1) {
            out.add("  features " + hex(uffdFeatures) + ": " + String.join(" ", Userfaultfd.featureNames(uffdFeatures)));
            out.add("  ioctls: " + String.join(" ", Userfaultfd.ioctlNames(uffdIoctls)));
        }
        return out;
    }

    @Override
    public String toString() {
        return String.join("\n", lines());
    }
}
