# A RefCOCO-style program: the answer is a patch, reported as its box.
def execute_command(image):
    image_patch = ImagePatch(image)
    crosses = image_patch.find("cross")
    crosses.sort(key=lambda c: c.vertical_center)
    return crosses[0]
