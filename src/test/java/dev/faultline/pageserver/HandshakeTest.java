package dev.faultline.pageserver;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.charset.StandardCharsets;
import java.util.List;
import org.junit.jupiter.api.Test;

class HandshakeTest {
    static final List<GuestRegionMapping> REGIONS = List.of(new GuestRegionMapping(0x7f0000200000L, 0x100000, 0x300000, 4096),
            new GuestRegionMapping(0x7f0000400000L, 0x300000, 0, 4096));

    static Handshake.HandshakeException refused(String json) {
        return assertThrows(Handshake.HandshakeException.class, () -> Handshake.parse(json.getBytes(StandardCharsets.US_ASCII)));
    }

    @Test
    void shouldWriteEachReleasesJsonAsSerdeJsonDoes() {
        assertEquals("[{\"base_host_virt_addr\":139637978824704,\"size\":1048576,\"offset\":3145728},"
                + "{\"base_host_virt_addr\":139637980921856,\"size\":3145728,\"offset\":0}]",
                new String(Handshake.encode(REGIONS, FirecrackerVersion.V1_1), StandardCharsets.US_ASCII));
        assertEquals("[{\"base_host_virt_addr\":139637978824704,\"size\":1048576,\"offset\":3145728,\"page_size_kib\":4096},"
                + "{\"base_host_virt_addr\":139637980921856,\"size\":3145728,\"offset\":0,\"page_size_kib\":4096}]",
                new String(Handshake.encode(REGIONS, FirecrackerVersion.V1_7), StandardCharsets.US_ASCII));
        assertEquals("[{\"base_host_virt_addr\":139637978824704,\"size\":1048576,\"offset\":3145728,\"page_size\":4096,\"page_size_kib\":4096},"
                + "{\"base_host_virt_addr\":139637980921856,\"size\":3145728,\"offset\":0,\"page_size\":4096,\"page_size_kib\":4096}]",
                new String(Handshake.encode(REGIONS, FirecrackerVersion.V1_12), StandardCharsets.US_ASCII));
        assertEquals("[{\"base_host_virt_addr\":139637978824704,\"size\":1048576,\"offset\":3145728,\"gpa_start\":3145728,\"page_size\":4096,"
                + "\"is_guest_memfd\":false,\"page_size_kib\":4096},{\"base_host_virt_addr\":139637980921856,\"size\":3145728,\"offset\":0,"
                + "\"gpa_start\":0,\"page_size\":4096,\"is_guest_memfd\":false,\"page_size_kib\":4096}]",
                new String(Handshake.encode(REGIONS, FirecrackerVersion.SECRET_HIDING), StandardCharsets.US_ASCII));
    }

    @Test
    void shouldReadEveryReleasesHandshakeAndOrderTheRegionsByFileOffset() {
        for (FirecrackerVersion v : FirecrackerVersion.values()) {
            Handshake h = Handshake.parse(Handshake.encode(REGIONS, v));
            assertEquals(0, h.regions().get(0).offset(), v.label());
            assertEquals(0x400000, h.totalBytes());
            assertEquals(v == FirecrackerVersion.SECRET_HIDING ? v : v.sendsPageSize() ? FirecrackerVersion.V1_12
                    : v.sendsPageSizeKib() ? FirecrackerVersion.V1_7 : FirecrackerVersion.V1_1, h.shape(), v.label());
            assertEquals(v.sendsPageSize() || v.sendsPageSizeKib() ? 4096 : 0, h.regions().get(0).pageSize());
        }
        assertTrue(Handshake.complete(Handshake.encode(REGIONS, FirecrackerVersion.V1_12), Handshake.encode(REGIONS, FirecrackerVersion.V1_12).length));
        assertFalse(Handshake.complete("[{\"size\":1".getBytes(StandardCharsets.US_ASCII), 10));
    }

    @Test
    void shouldRefuseWhatFirecrackerNeverSendsNamingTheRegionOrField() {
        String r0 = "{\"base_host_virt_addr\":4194304,\"size\":4096,\"offset\":0";
        assertEquals("the handshake names no region", refused("[]").getMessage());
        assertTrue(refused("[" + r0 + ",\"page_size\":2097152,\"page_size_kib\":2097152}]").getMessage().contains("4096-byte pages only"));
        assertTrue(refused("[" + r0 + ",\"page_size\":4096,\"page_size_kib\":8192}]").getMessage().contains("page_size_kib 8192"));
        assertTrue(refused("[" + r0 + ",\"gpa_start\":0,\"is_guest_memfd\":true}]").getMessage().contains("is_guest_memfd: true"));
        assertTrue(refused("[" + r0 + ",\"is_guest_memfd\":1}]").getMessage().contains("not a boolean"));
        assertTrue(refused("[" + r0 + ",\"evil\":1}]").getMessage().contains("unknown field 'evil'"));
        assertTrue(refused("[" + r0 + ",\"s\\u0000\":1}]").getMessage().contains("a name of 2 characters"));
        assertTrue(refused("[{\"base_host_virt_addr\":4194304,\"size\":4096,\"offset\":4096}]").getMessage().contains("consecutive from 0"));
        assertTrue(refused("[" + r0 + "},{\"base_host_virt_addr\":4194304,\"size\":4096,\"offset\":4096}]").getMessage().contains("overlap"));
        assertTrue(refused("[{\"base_host_virt_addr\":4194305,\"size\":4096,\"offset\":0}]").getMessage().contains("whole 4 KiB pages"));
        assertTrue(refused("[{\"base_host_virt_addr\":140737488355328,\"size\":4096,\"offset\":0}]").getMessage().contains("user space"));
        assertTrue(refused("[{\"base_host_virt_addr\":18446744073709551615,\"size\":4096,\"offset\":0}]").getMessage().contains("out of range"));
        assertTrue(refused("[{\"size\":4096,\"offset\":0}]").getMessage().contains("lacks base_host_virt_addr"));
        assertTrue(refused("[" + r0 + "}] x").getMessage().contains("not valid JSON"));
        assertTrue(refused("[" + r0 + "," + r0.substring(1) + "}]").getMessage().contains("not valid JSON"));
        StringBuilder many = new StringBuilder("[");
        for (int i = 0; i < 65; i++) many.append(i == 0 ? "" : ",").append("{\"base_host_virt_addr\":").append(4194304L + 8192L * i)
                .append(",\"size\":4096,\"offset\":").append(4096L * i).append('}');
        assertTrue(refused(many.append(']').toString()).getMessage().contains("more than 64 regions"));
    }
}
