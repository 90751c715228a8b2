package dev.faultline.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class UnitsTest {
    @Test
    void shouldParseSizesWithBinarySuffixes() {
        assertEquals(4096, Units.parseSize("4096"));
        assertEquals(64L << 10, Units.parseSize("64K"));
        assertEquals(128L << 20, Units.parseSize("128M"));
        assertEquals(128L << 20, Units.parseSize("128MiB"));
        assertEquals(1L << 30, Units.parseSize("1g"));
        assertEquals(0x1000, Units.parseSize("0x1000"));
    }

    @Test
    void shouldParseAddressesInHexAndDecimal() {
        assertEquals(0x200000, Units.parseAddress("0x200000"));
        assertEquals(2097152, Units.parseAddress("2097152"));
    }

    @Test
    void shouldRejectGarbageNamingTheText() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Units.parseSize("12Q"));
        assertTrue(e.getMessage().contains("'12Q'"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Units.parseSize("-4K"));
        assertThrows(IllegalArgumentException.class, () -> Units.parseSize("99999999999999G"));
    }
}
