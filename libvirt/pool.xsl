<?xml version="1.0"?>
<!-- Applied by the libvirt provider to the storage pool's XML (components/libvirt_xml.py pool_xslt,
     which fills in the numeric gid of a group QEMU runs in). The pool directory
     holds every node's disk and cloud-init ISO, and the provider creates the ISO mode 644: the
     directory is root's, enterable by that group only (0710) and by nobody else, so only root and
     QEMU reach the files, and nobody but root lists them. libvirt sets these permissions when it
     builds the pool, on an existing directory too. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output omit-xml-declaration="yes" indent="yes"/>
  <xsl:template match="node()|@*">
    <xsl:copy>
      <xsl:apply-templates select="node()|@*"/>
    </xsl:copy>
  </xsl:template>
  <xsl:template match="/pool/target">
    <xsl:copy>
      <xsl:apply-templates select="node()[not(self::permissions)]|@*"/>
      <permissions>
        <mode>0710</mode>
        <owner>0</owner>
        <group>__QEMU_GID__</group>
      </permissions>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
