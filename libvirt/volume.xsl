<?xml version="1.0"?>
<!-- Applied by the libvirt provider to a disk volume's XML (components/libvirt_xml.py volume_xslt).
     The provider asks for mode 644 on every volume; a node's disk holds its keys and tokens once it
     has booted, so it is 0600 instead: root's until the VM starts, then QEMU's (libvirt hands the
     image to QEMU's user and back). -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="node()|@*">
    <xsl:copy>
      <xsl:apply-templates select="node()|@*"/>
    </xsl:copy>
  </xsl:template>
  <xsl:template match="/volume/target">
    <xsl:copy>
      <xsl:apply-templates select="node()[not(self::permissions)]|@*"/>
      <permissions>
        <mode>0600</mode>
      </permissions>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
