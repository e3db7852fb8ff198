<?xml version="1.0"?>
<!-- Applied by pulumi-libvirt to the storage pool's XML: the pool directory is root's and only
     traversable by others (0711), so nobody can list it; libvirt creates each volume in it 0600, so
     only its owner (root, or the qemu user once a VM uses it) reads the disks and the cloud-init
     disks, which carry the nodes' keys and tokens. -->
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
        <mode>0711</mode>
        <owner>0</owner>
        <group>0</group>
      </permissions>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
